"""The suite passes whatever ``ND73_*`` variables the shell that runs it has set: a few
representative test files run in a child pytest whose environment sets every setting to a
value that would break them if a test, or the code under test, read it."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from engine.config import VARIABLES

from conftest import PROJECT, SUITE_VARIABLES, child_environment
from scratch_db import scratch_database

REPRESENTATIVE = ["tests/test_settings.py", "tests/test_api_admin.py",
                  "tests/test_notifications.py", "tests/test_cli_and_server.py"]


def hostile(tmp_path) -> dict[str, str]:
    """A value for every setting that differs from what the tests expect: a database that
    cannot exist, another demo password, a mail server nobody answers, a manual clock, tiny
    limits, and a value that cannot be parsed at all."""
    return {
        "ND73_DATABASE_URL": f"sqlite:///{tmp_path / 'missing' / 'folder' / 'nd73.sqlite3'}",
        "ND73_DEMO_PASSWORD": "not-the-demo-password",
        "ND73_SECRET_KEY": "a-key-the-tests-do-not-know-0123456789abcdef",
        "ND73_SMTP_HOST": "192.0.2.1",              # TEST-NET-1: connections hang
        "ND73_SMTP_PORT": "9",
        "ND73_SMTP_TLS": "ssl",
        "ND73_SMTP_USER": "intruder",
        "ND73_SMTP_PASSWORD": "intruder-password",
        "ND73_SMTP_SENDER": "Intruder <intruder@example.invalid>",
        "ND73_EMBEDDED_SCHEDULER": "1",
        "ND73_TEST_CLOCK": "1",
        "ND73_DIGEST_HOUR": "23",
        "ND73_PUBLIC_URL": "https://hostile.example.invalid",
        "ND73_TOKEN_TTL": "60",
        "ND73_MAX_BODY_BYTES": "1024",
        "ND73_MAX_DATA_BYTES": "1024",
        "ND73_MAX_COLLECTION_BYTES": "1024",
        "ND73_SCRIPT_TIME_LIMIT": "0.0001",
        "ND73_SCHEDULER_INTERVAL": "3600",
        "ND73_SECURE_COOKIES": "1",
        "ND73_HOST": "192.0.2.1",
        "ND73_PORT": "1",
        "ND73_THREADS": "1",
        "ND73_WORKERS": "many",                      # refused by anything that reads it
        "ND73_OIDC_ISSUER": "https://192.0.2.1/realms/intruder",
        "ND73_OIDC_CLIENT_ID": "intruder",
        "ND73_OIDC_CLIENT_SECRET": "intruder-secret",
        "ND73_OIDC_CLAIM": "email",
        "ND73_OIDC_SCOPE": "openid email",
        "ND73_PASSWORD_SIGN_IN": "0",
        "ND73_SESSION_TTL": "1",
        "ND73_SMTP_HOSTT": "misspelt",
    }


def test_the_hostile_environment_sets_every_setting(tmp_path):
    assert set(VARIABLES) <= set(hostile(tmp_path))
    assert not set(hostile(tmp_path)) & SUITE_VARIABLES


@pytest.mark.slow
def test_representative_tests_pass_in_a_hostile_environment(tmp_path, database_url):
    with scratch_database(database_url, tmp_path, "environment") as url:
        env = child_environment(**hostile(tmp_path), ND73_TEST_DATABASE_URL=url,
                                PYTHONPATH=os.pathsep.join(
                                    filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")])))
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
             f"--basetemp={tmp_path / 'child'}", *REPRESENTATIVE],
            cwd=PROJECT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
