"""Shared fixtures: a real database (SQLite file, or PostgreSQL via ND73_TEST_DATABASE_URL),
migrated once per session and emptied before each test; an engine on a manual clock.

The suite passes whatever ``ND73_*`` variables the shell has: each test starts without any
but those that choose how the suite itself runs (:data:`SUITE_VARIABLES`), sets what it
depends on, and starts child processes with :func:`child_environment`."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from engine.access import Principal
from engine.variants import SourceFile
from engine.audit import triggers_lifted
from engine.config import TEST_VARIABLES
from engine.clock import ManualClock
from engine.store import Database
from engine.store.models import Base
from engine.workflow_engine import WorkflowEngine

FIXTURES = Path(__file__).parent / "fixtures"
PROJECT = Path(__file__).resolve().parents[1]
# the test database, the fault tests, the browser and the benchmarks' PostgreSQL server
SUITE_VARIABLES = frozenset(TEST_VARIABLES)


def product_variables(env=os.environ) -> list[str]:
    """The ``ND73_*`` variables of ``env`` that configure the product, not the suite."""
    return [name for name in env if name.startswith("ND73_") and name not in SUITE_VARIABLES]


def child_environment(**values: str) -> dict[str, str]:
    """The environment of a process a test starts: this one's without the product's
    ``ND73_*`` variables, plus ``values``."""
    product = product_variables()
    env = {name: value for name, value in os.environ.items() if name not in product}
    return {**env, **values}


@pytest.fixture(autouse=True)
def no_product_settings(monkeypatch):
    """Every test starts with none of the product's ``ND73_*`` variables set."""
    for name in product_variables():
        monkeypatch.delenv(name)

# The fixtures' processes name no organisation: their people act as trusted principals,
# whose rights the engine does not check (tests/test_engine_rights.py checks them).
ALICE, BOB, CAROL = (Principal.system(name) for name in ("alice", "bob", "carol"))
ADMIN, MALLORY = Principal.system("admin"), Principal.system("mallory")
PORTAL = Principal.system("portal")          # a message from outside


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    url = os.environ.get("ND73_TEST_DATABASE_URL")
    if not url:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    database = Database(url)
    with database.engine.begin() as connection:
        Base.metadata.drop_all(connection)
        if inspect(connection).has_table("alembic_version"):
            connection.execute(text("DROP TABLE alembic_version"))
    database.upgrade()
    database.dispose()
    return url


def empty_database(db: Database) -> None:
    # the append-only triggers are lifted for this one transaction only
    with db.engine.begin() as connection, triggers_lifted(connection):
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def engine(database_url, clock):
    # the production default: org look-ups in scripts cost CPU on a cold process
    wf_engine = WorkflowEngine(database_url, clock=clock, script_time_limit=1.0)
    empty_database(wf_engine.db)
    yield wf_engine
    wf_engine.close()


def bpmn_source(name: str = "review.bpmn", replace: dict[str, str] | None = None,
                file_name: str | None = None) -> SourceFile:
    content = (FIXTURES / "bpmn" / name).read_text(encoding="utf-8")
    for old, new in (replace or {}).items():
        assert old in content, f"fixture {name} has no {old!r}"
        content = content.replace(old, new)
    return SourceFile(file_name or name, content.encode("utf-8"))


@pytest.fixture
def review(engine):
    """The review process deployed in variant 'national'."""
    [deployed] = engine.repository.deploy("national", [bpmn_source()], "designer")
    return deployed


@pytest.fixture
def server(engine):
    """The process library deployed and the web app and API served by a real HTTP server on
    the loopback, for tests that drive it over HTTP or through a browser."""
    from api_client import LiveServer          # both import this module
    from procedures import deploy_library
    deploy_library(engine)
    live = LiveServer(engine)
    yield live
    live.stop()
