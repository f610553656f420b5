"""Alembic, driven from code: ``nd73 db upgrade`` and the test suite call :func:`upgrade`."""
from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(database, revision: str = "head") -> None:
    _migrate(database, command.upgrade, revision)


def downgrade(database, revision: str) -> None:
    _migrate(database, command.downgrade, revision)


def _migrate(database, step, revision: str) -> None:
    config = alembic_config(database.url)
    with database.engine.connect() as connection:
        config.attributes["connection"] = connection
        step(config, revision)
        connection.commit()


@cache
def newest_heads() -> frozenset[str]:
    """The newest revisions of the migration scripts, read once per process: they ship with
    the code (reading them takes ~20 ms, which every readiness probe spent)."""
    return frozenset(ScriptDirectory(str(MIGRATIONS)).get_heads())


def is_current(database) -> bool:
    """True when the database schema is at the newest migration."""
    with database.engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    return set(current) == newest_heads()
