"""Provisioning of SQLAlchemy's dialect test suite (sqlalchemy.testing) for the dbmgr
dialects, loaded by their load_provisioning() when SQLAlchemy's pytest plugin sets up a
database (tests/sqlalchemy). Not used otherwise.

PostgreSQL, MySQL/MariaDB: SQLAlchemy's own provisioning for the database (nothing in it
assumes a particular driver).
SQLite: only the temporary-table keywords of SQLite's own. Its hook that ATTACHes a second
file as schema "test_schema" is left out: dbmgrd refuses ATTACH (a client could otherwise open
any file the daemon can read), so the suite's tests of a second schema cannot pass through
dbmgr (docs/python.md).
"""

import sqlalchemy.dialects.mysql.provision  # noqa: F401
import sqlalchemy.dialects.postgresql.provision  # noqa: F401
from sqlalchemy.testing.provision import temp_table_keyword_args


@temp_table_keyword_args.for_db("sqlite")
def _sqlite_temp_table_keyword_args(cfg, eng):
    return {"prefixes": ["TEMPORARY"]}
