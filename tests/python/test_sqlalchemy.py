"""The SQLAlchemy dialects sqlite+dbmgr and postgresql+dbmgr with an ORM model and a
Session, through a real dbmgrd (issue 15). SQLAlchemy 1.4 from Debian 12."""

import os
import urllib.parse

import pytest
import sqlalchemy
from sqlalchemy import Column, Integer, String, create_engine, func, select
from sqlalchemy.orm import Session, declarative_base

import dbmgr
import dbmgr.sqlalchemy

dbmgr.sqlalchemy.register()


def _url(daemon):
    q = {"socket": daemon.socket}
    if daemon.engine == "sqlite":
        q["prefix"] = "test"
        return "sqlite+dbmgr:///pytest?" + urllib.parse.urlencode(q)
    return "postgresql+dbmgr:///%s?%s" % (os.environ["DBMGR_TEST_PG_DB"], urllib.parse.urlencode(q))


def test_orm_model_and_session(daemon, table):
    engine = create_engine(_url(daemon), future=True)
    assert engine.dialect.driver == "dbmgr"
    assert engine.dialect.name == daemon.engine
    assert isinstance(engine.pool, sqlalchemy.pool.NullPool)
    Base = declarative_base()

    class User(Base):
        __tablename__ = table
        id = Column(Integer, primary_key=True)
        email = Column(String(100), nullable=False, unique=True)

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add_all([User(email="ann@example.org"), User(email="bob@example.org")])
        s.commit()
    with Session(engine) as s:
        s.add(User(email="eve@example.org"))
        s.flush()
        s.rollback()
    with Session(engine) as s:
        users = s.scalars(select(User).order_by(User.id)).all()
        assert [(u.id, u.email) for u in users] == [(1, "ann@example.org"), (2, "bob@example.org")]
        s.add(User(email="ann@example.org"))
        with pytest.raises(sqlalchemy.exc.IntegrityError) as e:
            s.commit()
        assert isinstance(e.value.orig, dbmgr.IntegrityError)
        assert e.value.orig.sqlstate.startswith("23")
        s.rollback()
        assert s.scalar(select(func.count()).select_from(User)) == 2
    Base.metadata.drop_all(engine)
    with engine.connect() as c:
        assert not sqlalchemy.inspect(c).has_table(table)
    engine.dispose()


def test_url_read_only_and_client_name(daemon, table):
    with daemon.connect() as c:
        c.cursor().execute("CREATE TABLE %s (id BIGINT)" % table)
    engine = create_engine(_url(daemon) + "&read_only=true&client_name=sa-test", future=True)
    args = engine.dialect.create_connect_args(engine.url)[1]
    assert args["read_only"] is True and args["client_name"] == "sa-test"
    with engine.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM %s" % table).scalar() == 0
        with pytest.raises(sqlalchemy.exc.OperationalError) as e:
            c.exec_driver_sql("INSERT INTO %s VALUES (1)" % table)
        assert e.value.orig.category == "read_only"
    engine.dispose()


def test_entry_points_register_the_dialects(daemon):
    # A fresh interpreter that never calls register(): SQLAlchemy finds the dialects through
    # the package's entry points (client/python/dbmgr-VERSION.dist-info, installed beside it).
    import subprocess
    import sys
    code = (
        "import importlib.metadata as md, sqlalchemy, dbmgr\n"
        "assert md.version('dbmgr') == dbmgr.__version__, (md.version('dbmgr'), dbmgr.__version__)\n"
        "e = sqlalchemy.create_engine(%r, future=True)\n"
        "assert type(e.dialect).__module__ == 'dbmgr.sqlalchemy'\n"
        "with e.connect() as c:\n"
        "    assert c.exec_driver_sql('SELECT 1').scalar() == 1\n" % _url(daemon))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("own_daemon", ["postgresql"], indirect=True)
def test_postgresql_arrays_dates_numerics_round_trip(own_daemon):
    # Typed columns through postgresql+dbmgr come back as psycopg2 would give them: arrays
    # (text, quotes, commas, backslashes, NULLs, two dimensions), dates, NUMERIC.
    import datetime
    import decimal
    from sqlalchemy import ARRAY, Date, Numeric, Text, cast, literal
    from sqlalchemy.dialects.postgresql import ARRAY as PG_ARRAY
    Base = declarative_base()
    t = "py_arr_%d" % os.getpid()

    class Row(Base):
        __tablename__ = t
        id = Column(Integer, primary_key=True)
        ints = Column(PG_ARRAY(Integer))
        texts = Column(ARRAY(Text))
        grid = Column(PG_ARRAY(Integer, dimensions=2))
        days = Column(ARRAY(Date))
        amounts = Column(ARRAY(Numeric(10, 2)))
        day = Column(Date)
        amount = Column(Numeric(10, 2))

    engine = create_engine(_url(own_daemon), future=True)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    texts = ['a "quoted" word', "x,y", "back\\slash", None, "NULL", "", "{braces}"]
    try:
        with Session(engine) as s:
            s.add(Row(id=1, ints=[1, -2, 30], texts=texts, grid=[[1, 2], [3, 4]],
                      days=[datetime.date(2026, 12, 7), None],
                      amounts=[decimal.Decimal("1.50"), decimal.Decimal("-0.01")],
                      day=datetime.date(2000, 2, 29), amount=decimal.Decimal("12.34")))
            s.add(Row(id=2, ints=[], texts=None))
            s.commit()
        with Session(engine) as s:
            r = s.get(Row, 1)
            assert r.ints == [1, -2, 30]
            assert r.texts == texts
            assert r.grid == [[1, 2], [3, 4]]
            assert r.days == [datetime.date(2026, 12, 7), None]
            assert r.amounts == [decimal.Decimal("1.50"), decimal.Decimal("-0.01")]
            assert r.day == datetime.date(2000, 2, 29)
            assert r.amount == decimal.Decimal("12.34")
            r2 = s.get(Row, 2)
            assert r2.ints == [] and r2.texts is None
            # An array parameter in a WHERE clause (the server casts the text).
            assert s.scalars(select(Row.id).where(Row.ints.contains([30]))).all() == [1]
            assert s.scalar(select(cast(literal("{7,8}"), ARRAY(Integer)))) == [7, 8]
    finally:
        Base.metadata.drop_all(engine)
        engine.dispose()
