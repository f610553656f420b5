"""A second, empty database of the suite's kind (SQLite file or PostgreSQL), for tests that
need a target besides the session database: a PostgreSQL one is created on the same server,
named after the session database plus a suffix, and dropped afterwards."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


@contextmanager
def scratch_database(suite_url: str, folder: Path, suffix: str) -> Iterator[str]:
    url = make_url(suite_url)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{folder / (suffix + '.sqlite3')}"
        return
    name = f"{url.database}_{suffix}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
