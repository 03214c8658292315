"""SQLAlchemy's dialect compliance suite, as SQLAlchemy ships it (run by run_suite.py)."""

from sqlalchemy.testing.suite import *  # noqa: F401,F403
