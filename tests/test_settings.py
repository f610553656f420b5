"""The settings object: its defaults, every ``ND73_*`` variable parsed into its type, wrong
values refused by name, ``nd73 check-config``, and processes that keep the settings they
were started with whatever happens to the environment afterwards."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError

from api.app import create_app
from api.cli import main as cli
from engine.clock import ManualClock
from engine.config import (TEST_VARIABLES, VARIABLES, Settings, SettingsError,
                           unknown_variables)
from engine.demo import seed_orgs
from engine.errors import InvalidData
from engine.notifications.mailer import SmtpSettings
from engine.scheduler import Scheduler
from engine.store.db import default_database_url
from engine.workflow_engine import WorkflowEngine

from conftest import ALICE, PROJECT, bpmn_source, child_environment, empty_database

ND73 = Path(sys.executable).with_name("nd73")
SECRET_KEY = "k" * 40
TOKEN = "/api/v1/auth/token"


def set_environment(monkeypatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_defaults():
    settings = Settings.from_environment()       # the suite starts each test without ND73_*
    assert settings == Settings.defaults()
    assert settings.model_fields_set == set()
    assert settings.database_url == default_database_url()
    assert default_database_url().endswith("/var/nd73.sqlite3")
    assert (settings.host, settings.port, settings.workers, settings.threads) == (
        "127.0.0.1", 8000, 1, 4)
    assert (settings.script_time_limit, settings.max_data_bytes) == (1.0, 512 * 1024)
    assert (settings.token_ttl, settings.max_body_bytes) == (3600, 8 * 1024 * 1024)
    assert settings.secret_key is None and settings.smtp is None
    assert settings.demo_password.get_secret_value() == "nd73-demo"
    assert settings.public_url == "http://127.0.0.1:8000"
    assert (settings.digest_hour, settings.scheduler_interval) == (7, 1.0)
    assert not (settings.test_clock or settings.embedded_scheduler or settings.secure_cookies)
    assert (settings.smtp_tls, settings.smtp_sender) == (
        "none", "ND73 Workflow <no-reply@nd73.local>")


def test_every_field_has_a_description_and_a_type():
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert field.annotation is not None, name


def test_every_variable_is_in_the_readmes_configuration_tables():
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration\n", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split("|")[1] for line in section.splitlines()
                   if line.startswith("| `ND73_")]
    documented = set(re.findall(r"`(ND73_[A-Z_]+)`", "".join(first_cells)))
    assert documented == set(VARIABLES) | set(TEST_VARIABLES)


# variable, value in the environment, field, value parsed
PARSED = [
    ("ND73_DATABASE_URL", "postgresql+psycopg://nd73:pw@db:5432/nd73", "database_url",
     "postgresql+psycopg://nd73:pw@db:5432/nd73"),
    ("ND73_SCRIPT_TIME_LIMIT", "2.5", "script_time_limit", 2.5),
    ("ND73_MAX_DATA_BYTES", "65536", "max_data_bytes", 65536),
    ("ND73_MAX_COLLECTION_BYTES", "1048576", "max_collection_bytes", 1048576),
    ("ND73_TEST_CLOCK", "1", "test_clock", True),
    ("ND73_HOST", "0.0.0.0", "host", "0.0.0.0"),
    ("ND73_PORT", "8081", "port", 8081),
    ("ND73_WORKERS", "3", "workers", 3),
    ("ND73_THREADS", "8", "threads", 8),
    ("ND73_SECRET_KEY", SECRET_KEY, "secret_key", SecretStr(SECRET_KEY)),
    ("ND73_TOKEN_TTL", "600", "token_ttl", 600),
    ("ND73_MAX_BODY_BYTES", "1048576", "max_body_bytes", 1048576),
    ("ND73_SECURE_COOKIES", "1", "secure_cookies", True),
    ("ND73_PUBLIC_URL", "https://nd73.tinh.gov.vn/", "public_url", "https://nd73.tinh.gov.vn"),
    ("ND73_EMBEDDED_SCHEDULER", "1", "embedded_scheduler", True),
    ("ND73_SCHEDULER_INTERVAL", "0.5", "scheduler_interval", 0.5),
    ("ND73_SMTP_HOST", " mail.tinh.gov.vn ", "smtp_host", "mail.tinh.gov.vn"),
    ("ND73_SMTP_PORT", "2525", "smtp_port", 2525),
    ("ND73_SMTP_TLS", "starttls", "smtp_tls", "starttls"),
    ("ND73_SMTP_SENDER", "Sở Nội vụ <no-reply@tinh.gov.vn>", "smtp_sender",
     "Sở Nội vụ <no-reply@tinh.gov.vn>"),
    ("ND73_DIGEST_HOUR", "0", "digest_hour", 0),
    ("ND73_DEMO_PASSWORD", "mat-khau-thu", "demo_password", SecretStr("mat-khau-thu")),
    ("ND73_SESSION_TTL", "3600", "session_ttl", 3600),
    ("ND73_PASSWORD_SIGN_IN", "1", "password_sign_in", True),
    ("ND73_OIDC_CLAIM", " preferred_username ", "oidc_claim", "preferred_username"),
    ("ND73_OIDC_SCOPE", "openid profile", "oidc_scope", "openid profile"),
]
# set together: one without the other is refused
LOGIN = {"ND73_SMTP_USER": "nd73", "ND73_SMTP_PASSWORD": "smtp-secret"}
OIDC = {"ND73_OIDC_ISSUER": "https://sso.tinh.gov.vn/realms/canbo/",
        "ND73_OIDC_CLIENT_ID": "nd73", "ND73_OIDC_CLIENT_SECRET": "oidc-secret"}


def test_every_variable_is_covered_here():
    assert {row[0] for row in PARSED} | set(LOGIN) | set(OIDC) == set(VARIABLES)


def test_single_sign_on_needs_the_issuer_and_the_client(monkeypatch):
    assert not Settings.from_environment().single_sign_on
    set_environment(monkeypatch, {**OIDC, "ND73_PASSWORD_SIGN_IN": "0"})
    settings = Settings.from_environment()
    assert settings.single_sign_on and not settings.password_sign_in
    assert settings.oidc_issuer == "https://sso.tinh.gov.vn/realms/canbo"
    assert settings.oidc_client_secret.get_secret_value() == "oidc-secret"
    assert (settings.oidc_claim, settings.session_ttl) == ("sub", 8 * 3600)
    assert ("ND73_OIDC_CLIENT_SECRET", "********", True) in settings.effective()
    monkeypatch.delenv("ND73_OIDC_CLIENT_SECRET")
    with pytest.raises(SettingsError) as refused:
        Settings.from_environment()
    assert refused.value.problems == ["ND73_OIDC_ISSUER, ND73_OIDC_CLIENT_ID and "
                                      "ND73_OIDC_CLIENT_SECRET: set all three or none"]
    for name in OIDC:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SettingsError) as refused:
        Settings.from_environment()
    assert refused.value.problems == ["ND73_PASSWORD_SIGN_IN=0 needs ND73_OIDC_ISSUER: "
                                      "nobody could sign in"]


@pytest.mark.parametrize("name,raw,field,expected", PARSED, ids=[row[0] for row in PARSED])
def test_each_variable_is_parsed_into_its_type(monkeypatch, name, raw, field, expected):
    monkeypatch.setenv(name, raw)
    settings = Settings.from_environment()
    value = getattr(settings, field)
    assert value == expected and type(value) is type(expected)
    assert settings.model_fields_set == {field}


def test_the_smtp_login_and_the_derived_smtp_settings(monkeypatch):
    set_environment(monkeypatch, {**LOGIN, "ND73_SMTP_HOST": "mail.tinh.gov.vn",
                                  "ND73_SMTP_TLS": "ssl"})
    settings = Settings.from_environment()
    assert settings.smtp_user == "nd73"
    assert settings.smtp_password.get_secret_value() == "smtp-secret"
    assert settings.smtp == SmtpSettings(host="mail.tinh.gov.vn", port=465, tls="ssl",
                                         user="nd73", password="smtp-secret",
                                         sender="ND73 Workflow <no-reply@nd73.local>")
    monkeypatch.setenv("ND73_SMTP_TLS", "starttls")
    assert Settings.from_environment().smtp.port == 587
    monkeypatch.setenv("ND73_SMTP_PORT", "2525")
    assert Settings.from_environment().smtp.port == 2525


def test_flags_and_empty_variables(monkeypatch):
    monkeypatch.setenv("ND73_TEST_CLOCK", "0")
    assert Settings.from_environment().test_clock is False
    # docker compose passes ${VAR:-} through as "": unset, never an empty host or a failure
    set_environment(monkeypatch, {"ND73_SMTP_HOST": "", "ND73_SMTP_USER": "",
                                  "ND73_SMTP_PASSWORD": "", "ND73_PORT": "",
                                  "ND73_SECURE_COOKIES": ""})
    settings = Settings.from_environment()
    assert settings.smtp is None and settings.port == 8000 and not settings.secure_cookies


# variable, wrong value, what the error says after the name
REFUSED = [
    ("ND73_PORT", "eighty", "'eighty' is not a whole number"),
    ("ND73_PORT", "70000", "'70000' is more than 65535"),
    ("ND73_WORKERS", "0", "'0' is less than 1"),
    ("ND73_THREADS", "4.5", "'4.5' is not a whole number"),
    ("ND73_SCRIPT_TIME_LIMIT", "fast", "'fast' is not a number"),
    ("ND73_SCRIPT_TIME_LIMIT", "0", "'0' must be greater than 0"),
    ("ND73_SCHEDULER_INTERVAL", "-1", "'-1' must be greater than 0"),
    ("ND73_MAX_DATA_BYTES", "100", "'100' is less than 1024"),
    ("ND73_MAX_COLLECTION_BYTES", "100", "'100' is less than 1024"),
    ("ND73_MAX_BODY_BYTES", "8MB", "'8MB' is not a whole number"),
    ("ND73_TOKEN_TTL", "10", "'10' is less than 60"),
    ("ND73_TEST_CLOCK", "yes please", "'yes please' must be 1 or 0"),
    ("ND73_EMBEDDED_SCHEDULER", "2", "'2' must be 1 or 0"),
    ("ND73_SECURE_COOKIES", "always", "'always' must be 1 or 0"),
    ("ND73_SECRET_KEY", "short-secret", "use at least 32 random characters"),
    ("ND73_DATABASE_URL", "not a url", "'not a url' is not a database URL"),
    ("ND73_PUBLIC_URL", "nd73.tinh.gov.vn", "'nd73.tinh.gov.vn' must start with http://"),
    ("ND73_SMTP_PORT", "smtp", "'smtp' is not a whole number"),
    ("ND73_SMTP_TLS", "tls", "'tls' must be one of 'none', 'starttls' or 'ssl'"),
    ("ND73_SMTP_SENDER", "nd73", "'nd73' is not an e-mail address"),
    ("ND73_DIGEST_HOUR", "24", "'24' is more than 23"),
    ("ND73_SESSION_TTL", "60", "'60' is less than 300"),
    ("ND73_PASSWORD_SIGN_IN", "never", "'never' must be 1 or 0"),
    ("ND73_OIDC_ISSUER", "sso.tinh.gov.vn", "'sso.tinh.gov.vn' must start with https://"),
    ("ND73_OIDC_CLAIM", " ", "must not be blank"),
]


@pytest.mark.parametrize("name,raw,reason", REFUSED, ids=[f"{r[0]}={r[1]}" for r in REFUSED])
def test_a_wrong_value_is_refused_naming_its_variable(monkeypatch, name, raw, reason):
    monkeypatch.setenv(name, raw)
    with pytest.raises(SettingsError) as refused:
        Settings.from_environment()
    [problem] = refused.value.problems
    assert problem.startswith(f"{name}: {reason}"), problem


def test_every_wrong_variable_is_named_at_once_and_secrets_are_not_repeated(monkeypatch):
    set_environment(monkeypatch, {"ND73_PORT": "eighty", "ND73_DIGEST_HOUR": "25",
                                  "ND73_SECRET_KEY": "too-short-secret"})
    with pytest.raises(SettingsError) as refused:
        Settings.from_environment()
    assert [p.split(":")[0] for p in refused.value.problems] == [
        "ND73_PORT", "ND73_SECRET_KEY", "ND73_DIGEST_HOUR"]
    assert "too-short-secret" not in str(refused.value)


@pytest.mark.parametrize("name", list(LOGIN))
def test_the_smtp_login_needs_both_variables(monkeypatch, name):
    monkeypatch.setenv(name, LOGIN[name])
    with pytest.raises(SettingsError) as refused:
        Settings.from_environment()
    assert refused.value.problems == [
        "ND73_SMTP_USER and ND73_SMTP_PASSWORD: set both or neither"]


def test_settings_are_frozen_and_library_callers_never_read_the_environment(monkeypatch,
                                                                             database_url):
    set_environment(monkeypatch, {"ND73_PORT": "9000", "ND73_TEST_CLOCK": "1",
                                  "ND73_PUBLIC_URL": "https://elsewhere.example",
                                  "ND73_DATABASE_URL": "sqlite:////nowhere/nd73.sqlite3"})
    settings = Settings.defaults(port=8123)
    assert settings.port == 8123 and settings.model_fields_set == {"port"}
    with pytest.raises(ValidationError):
        settings.port = 1
    with pytest.raises(SettingsError) as refused:
        Settings.defaults(digest_hour=30)
    assert refused.value.problems == ["ND73_DIGEST_HOUR: '30' is more than 23"]
    engine = WorkflowEngine(database_url)
    try:
        assert engine.settings == Settings.defaults()
        assert not isinstance(engine.clock, ManualClock)
        assert engine.notifications.base_url == "http://127.0.0.1:8000"
    finally:
        engine.close()


def test_effective_settings_mask_secrets_and_mark_defaults():
    settings = Settings.defaults(
        database_url="postgresql+psycopg://nd73:db-password@db:5432/nd73",
        secret_key=SECRET_KEY, smtp_host="mail", smtp_user="nd73", smtp_password="smtp-pw",
        port=8081)
    rows = {name: (shown, is_set) for name, shown, is_set in settings.effective()}
    assert set(rows) == set(VARIABLES)
    assert rows["ND73_DATABASE_URL"] == ("postgresql+psycopg://nd73:***@db:5432/nd73", True)
    assert rows["ND73_SECRET_KEY"] == ("********", True)
    assert rows["ND73_SMTP_PASSWORD"] == ("********", True)
    assert rows["ND73_DEMO_PASSWORD"] == ("********", False)
    assert rows["ND73_PORT"] == ("8081", True) and rows["ND73_HOST"] == ("127.0.0.1", False)
    assert rows["ND73_TEST_CLOCK"] == ("0", False)


def test_misspelt_variables_are_pointed_out():
    notes = unknown_variables({"ND73_SMTP_HOSTT": "mail", "ND73_PORT": "1",
                               "ND73_TEST_DATABASE_URL": "sqlite://", "PATH": "/bin"})
    assert notes == ["ND73_SMTP_HOSTT is not a setting and is ignored "
                     "(did you mean ND73_SMTP_HOST?)"]


def _check_config(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ND73), "check-config"], cwd=PROJECT, capture_output=True,
                          text=True, timeout=60, env=child_environment(**env))


def test_check_config_prints_the_effective_settings_with_secrets_masked(database_url):
    secrets = {"ND73_SECRET_KEY": SECRET_KEY, "ND73_SMTP_PASSWORD": "smtp-secret-7731",
               "ND73_DEMO_PASSWORD": "demo-secret-5512"}
    result = _check_config(ND73_DATABASE_URL=database_url, ND73_PORT="8081",
                           ND73_SMTP_HOST="mail.tinh.gov.vn", ND73_SMTP_USER="nd73",
                           ND73_SMTP_TLS="starttls", ND73_SMTP_HOSTT="typo", **secrets)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    listed = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("ND73_")}
    assert set(listed) == set(VARIABLES)
    assert listed["ND73_PORT"] == ["8081"]
    assert listed["ND73_HOST"] == ["127.0.0.1", "(default)"]
    assert listed["ND73_SMTP_TLS"] == ["starttls"]
    for name in secrets:
        assert listed[name][0] == "********"
    for value in secrets.values():
        assert value not in result.stdout and value not in result.stderr
    assert "ok: database reachable" in result.stdout
    assert "ok: e-mail through mail.tinh.gov.vn:587 (starttls)" in result.stdout
    assert lines[-1] == "configuration is valid"
    assert "warning: ND73_SMTP_HOSTT is not a setting" in result.stderr


def test_check_config_names_each_wrong_variable_and_fails(database_url):
    result = _check_config(ND73_DATABASE_URL=database_url, ND73_SMTP_PORT="smtp",
                           ND73_DIGEST_HOUR="24", ND73_SECRET_KEY="short-secret-0042",
                           ND73_EMBEDDED_SCHEDULER="yes please", ND73_SMTP_TLS="tls")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: ND73_SECRET_KEY: use at least 32 random characters",
        "error: ND73_EMBEDDED_SCHEDULER: 'yes please' must be 1 or 0",
        "error: ND73_SMTP_PORT: 'smtp' is not a whole number",
        "error: ND73_SMTP_TLS: 'tls' must be one of 'none', 'starttls' or 'ssl'",
        "error: ND73_DIGEST_HOUR: '24' is more than 23"]
    assert "short-secret-0042" not in result.stderr
    assert result.stdout == ""                 # no settings shown when they are wrong


def test_check_config_refuses_valid_settings_that_do_not_work(tmp_path):
    result = _check_config(ND73_DATABASE_URL=f"sqlite:///{tmp_path / 'no' / 'dir' / 'x.db'}",
                           ND73_TEST_CLOCK="1")
    assert result.returncode == 1
    assert "error: ND73_DATABASE_URL: cannot connect" in result.stderr
    assert "error: ND73_TEST_CLOCK=1 puts the engine on a manual clock" in result.stderr


def test_other_commands_stop_on_a_wrong_variable_and_name_it(monkeypatch):
    monkeypatch.setenv("ND73_SMTP_PORT", "smtp")
    result = CliRunner().invoke(cli, ["scheduler", "--once"])
    assert result.exit_code == 1
    assert "error: ND73_SMTP_PORT: 'smtp' is not a whole number" in result.output


def test_a_command_uses_the_settings_it_is_given(monkeypatch, engine, tmp_path):
    monkeypatch.setenv("ND73_DATABASE_URL", f"sqlite:///{tmp_path / 'no' / 'dir' / 'x.db'}")
    given = Settings.defaults(database_url=engine.db.url)
    result = CliRunner().invoke(cli, ["scheduler", "--once"], obj=given)
    assert result.exit_code == 0, result.output
    assert "fired 0 timer(s)" in result.output


STARTUP = {"ND73_TOKEN_TTL": "120", "ND73_MAX_BODY_BYTES": "2048",
           "ND73_MAX_DATA_BYTES": "2048", "ND73_DEMO_PASSWORD": "mat-khau-khoi-dong",
           "ND73_TEST_CLOCK": "1", "ND73_PUBLIC_URL": "https://nd73.tinh.gov.vn",
           "ND73_SMTP_HOST": "mail.tinh.gov.vn", "ND73_DIGEST_HOUR": "9",
           "ND73_SECURE_COOKIES": "1", "ND73_SECRET_KEY": SECRET_KEY}
LATER = {"ND73_TOKEN_TTL": "7200", "ND73_MAX_BODY_BYTES": "9999999",
         "ND73_MAX_DATA_BYTES": "9999999", "ND73_DEMO_PASSWORD": "mat-khau-sau",
         "ND73_TEST_CLOCK": "0", "ND73_PUBLIC_URL": "https://elsewhere.example",
         "ND73_DIGEST_HOUR": "3", "ND73_SECURE_COOKIES": "0",
         "ND73_SECRET_KEY": "another-key-" + "x" * 40, "ND73_DATABASE_URL": "not a url"}


def test_the_app_and_engine_keep_the_settings_they_were_started_with(monkeypatch,
                                                                      database_url):
    set_environment(monkeypatch, {**STARTUP, "ND73_DATABASE_URL": database_url})
    settings = Settings.from_environment()          # startup: read once
    app = create_app(settings=settings)
    engine = app.extensions["nd73"]
    try:
        empty_database(engine.db)
        monkeypatch.delenv("ND73_SMTP_HOST")
        set_environment(monkeypatch, LATER)          # the environment changes afterwards
        seed_orgs(engine, PROJECT / "processes")
        client = app.test_client()

        signed_in = client.post(TOKEN, json={"username": "admin",
                                             "password": "mat-khau-khoi-dong"})
        assert signed_in.status_code == 200 and signed_in.json["expires_in"] == 120
        assert client.post(TOKEN, json={"username": "admin",
                                        "password": "mat-khau-sau"}).status_code == 401
        assert client.post(TOKEN, data=b"{" + b" " * 4096 + b"}",
                           content_type="application/json").status_code == 413
        assert app.config["SECRET_KEY"] == SECRET_KEY
        assert app.config["SESSION_COOKIE_SECURE"] is True

        assert isinstance(engine.clock, ManualClock)
        paths = client.get("/api/v1/openapi.json").json["paths"]
        assert "/api/v1/admin/clock" in paths

        engine.repository.deploy("national", [bpmn_source()], "designer")
        with pytest.raises(InvalidData, match="2,048 bytes"):
            engine.runtime.start("national", "review", principal=ALICE,
                                 data={"note": "x" * 3000})
        assert engine.db.url == database_url
        assert engine.notifications.base_url == "https://nd73.tinh.gov.vn"

        scheduler = Scheduler(engine, owner="after-startup")
        assert scheduler.outbox.smtp == SmtpSettings(host="mail.tinh.gov.vn")
        assert scheduler.outbox.hour == 9
    finally:
        engine.close()
