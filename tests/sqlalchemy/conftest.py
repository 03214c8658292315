"""SQLAlchemy's pytest plugin, with the dbmgr dialects registered: run by run_suite.py."""

import pytest
from sqlalchemy.dialects import registry

registry.register("sqlite.dbmgr", "dbmgr.sqlalchemy", "SQLiteDialect_dbmgr")
registry.register("postgresql.dbmgr", "dbmgr.sqlalchemy", "PGDialect_dbmgr")

pytest.register_assert_rewrite("sqlalchemy.testing.assertions")

from sqlalchemy.testing.plugin.pytestplugin import *  # noqa: E402,F401,F403
