"""A second, empty database of the suite's kind (SQLite file or PostgreSQL), for tests that
need a target besides the session database: a PostgreSQL one is created on the same server,
named after the session database plus a suffix, and dropped afterwards."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy.engine import make_url

from bench.common import postgres_database


@contextmanager
def scratch_database(suite_url: str, folder: Path, suffix: str) -> Iterator[str]:
    url = make_url(suite_url)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{folder / (suffix + '.sqlite3')}"
        return
    with postgres_database(url, f"{url.database}_{suffix}") as scratch:
        yield scratch
