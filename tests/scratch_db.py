"""A second, empty database of the suite's kind (SQLite file or PostgreSQL), for tests that
need a target besides the session database: a PostgreSQL one is created on the same server,
named after the session database plus a suffix, and dropped afterwards."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy.engine import make_url

from bench.common import postgres_database


def proposal_at_vote(url: str, clock):
    """Migrate the database at ``url`` to the newest schema, deploy the process library
    and bring one national proposal to its leadership vote (online ballots); returns the case,
    its engine closed (a migration test then works on the database alone)."""
    from engine.store.migrate import upgrade
    from engine.workflow_engine import WorkflowEngine
    from procedures import deploy_library, to_decision

    engine = WorkflowEngine(url, clock=clock)
    try:
        upgrade(engine.db)
        deploy_library(engine, ballots=True)      # one ballot task per member
        return to_decision(engine, "national", "mau.sxd.qlxd.truongphong")
    finally:
        engine.close()


@contextmanager
def scratch_database(suite_url: str, folder: Path, suffix: str) -> Iterator[str]:
    url = make_url(suite_url)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{folder / (suffix + '.sqlite3')}"
        return
    with postgres_database(url, f"{url.database}_{suffix}") as scratch:
        yield scratch
