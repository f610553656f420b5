"""The settings read from the environment, their defaults, and a check that explains what is
wrong with them (``nd73 check-config``). Every setting is documented in README.md."""
from __future__ import annotations

from typing import Callable, Mapping

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from .notifications.mailer import check_environment as check_mail
from .store.db import default_database_url


def _integer(low: int, high: int | None = None) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        try:
            number = int(value)
        except ValueError:
            return f"'{value}' is not a whole number"
        if number < low or (high is not None and number > high):
            return f"{number} is outside {low}..{high if high is not None else '∞'}"
        return None
    return check


def _positive_number(value: str) -> str | None:
    try:
        return None if float(value) > 0 else f"{value} must be greater than 0"
    except ValueError:
        return f"'{value}' is not a number"


def _flag(value: str) -> str | None:
    return None if value in ("0", "1", "") else f"'{value}' must be 1 or 0"


CHECKS: dict[str, Callable[[str], str | None]] = {
    "ND73_PORT": _integer(1, 65535),
    "ND73_WORKERS": _integer(1, 64),
    "ND73_TOKEN_TTL": _integer(60, 7 * 24 * 3600),
    "ND73_MAX_BODY_BYTES": _integer(1024),
    "ND73_MAX_DATA_BYTES": _integer(1024),
    "ND73_SCRIPT_TIME_LIMIT": _positive_number,
    "ND73_SCHEDULER_INTERVAL": _positive_number,
    "ND73_EMBEDDED_SCHEDULER": _flag,
    "ND73_TEST_CLOCK": _flag,
    "ND73_SMTP_PORT": _integer(1, 65535),
    "ND73_DIGEST_HOUR": _integer(0, 23),
}


def check_environment(env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(problems, notes) for the ND73_* variables in ``env``."""
    problems, notes = [], []
    for name, check in CHECKS.items():
        if name in env:
            problem = check(env[name])
            if problem:
                problems.append(f"{name}: {problem}")
    url = env.get("ND73_DATABASE_URL") or default_database_url()
    try:
        parsed = make_url(url)
        engine = create_engine(url)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        notes.append(f"database reachable: {parsed.render_as_string(hide_password=True)}")
    except ArgumentError:
        problems.append(f"ND73_DATABASE_URL: '{url}' is not a database URL "
                        "(e.g. postgresql+psycopg://user:password@host:5432/nd73)")
    except (SQLAlchemyError, ImportError) as exc:
        problems.append(f"ND73_DATABASE_URL: cannot connect ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]})")
    secret = env.get("ND73_SECRET_KEY")
    if secret is not None and len(secret) < 32:
        problems.append("ND73_SECRET_KEY: use at least 32 random characters")
    elif secret is None:
        notes.append("ND73_SECRET_KEY unset: a key kept in var/secret_key signs tokens "
                     "(set the same key on every replica in production)")
    mail_problems, mail_notes = check_mail(env)
    problems += mail_problems
    notes += mail_notes
    if env.get("ND73_TEST_CLOCK") == "1":
        problems.append("ND73_TEST_CLOCK=1 puts the engine on a manual clock: tests only")
    return problems, notes
