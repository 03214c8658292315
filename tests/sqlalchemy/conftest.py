"""SQLAlchemy's pytest plugin, with the dbmgr dialects registered: run by run_suite.py."""

import pytest

import dbmgr.sqlalchemy  # noqa: E402

dbmgr.sqlalchemy.register()  # the blocking and asyncio dialects (entry points would do too)

pytest.register_assert_rewrite("sqlalchemy.testing.assertions")

from sqlalchemy.testing.plugin.pytestplugin import *  # noqa: E402,F401,F403
