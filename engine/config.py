"""The settings of a process: one typed object, read from the ``ND73_*`` environment
variables once at startup (``nd73`` commands, the Flask app factory, gunicorn) and passed
down to what needs it. Nothing else reads the environment, so a running process never
changes behaviour because its environment did.

``nd73 check-config`` shows the effective settings (secrets masked) or names every variable
that is wrong. Every setting is documented in README.md (Configuration).
"""
from __future__ import annotations

import difflib
from typing import Any, Literal, Mapping

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from .notifications.mailer import DEFAULT_PORTS, DEFAULT_SENDER, SmtpSettings
from .notifications.outbox import DEFAULT_DIGEST_HOUR
from .notifications.service import DEFAULT_PUBLIC_URL
from .org import DEFAULT_DEMO_PASSWORD
from .sandbox import DEFAULT_TIME_LIMIT
from .scripting import DEFAULT_MAX_COLLECTION_BYTES, DEFAULT_MAX_DATA_BYTES
from .store.db import default_database_url

PREFIX = "ND73_"
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_TOKEN_TTL = 3600
DEFAULT_SESSION_TTL = 8 * 3600
MIN_SECRET_KEY_LENGTH = 32
# read by the test suite and the benchmarks only, never by the product
TEST_VARIABLES = ("ND73_TEST_DATABASE_URL", "ND73_FAULT_TESTS", "ND73_CHROMIUM",
                  "ND73_BENCH_POSTGRES")


class SettingsError(ValueError):
    """Some ``ND73_*`` variables are wrong; ``problems`` has one line per variable, each
    starting with its name."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class Settings(BaseSettings):
    """Everything a deployment configures. Field ``x`` is read from ``ND73_X``; an empty
    variable counts as unset (docker compose passes ``${VAR:-}`` through as "")."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True,
                                      extra="ignore", frozen=True)

    # --- storage and engine ----------------------------------------------------------------
    database_url: str = Field(
        default_factory=default_database_url,
        description="SQLAlchemy URL of the database; PostgreSQL: "
                    "postgresql+psycopg://user:password@host:5432/nd73")
    script_time_limit: float = Field(
        default=DEFAULT_TIME_LIMIT, gt=0,
        description="CPU seconds per BPMN script or expression")
    max_data_bytes: int = Field(
        default=DEFAULT_MAX_DATA_BYTES, ge=1024,
        description="largest task data (JSON bytes) of an instance step")
    max_collection_bytes: int = Field(
        default=DEFAULT_MAX_COLLECTION_BYTES, ge=1024,
        description="largest collection (JSON bytes) a multi-instance activity iterates or "
                    "fills, counted apart from the rest of the task data")
    test_clock: bool = Field(
        default=False,
        description="1: manual engine clock and POST /api/v1/admin/clock (tests only)")

    # --- web server ------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="address `nd73 serve` binds")
    port: int = Field(default=8000, ge=1, le=65535, description="port of `nd73 serve`")
    workers: int = Field(default=1, ge=1, le=64, description="gunicorn worker processes")
    threads: int = Field(
        default=4, ge=1, le=256,
        description="threads per worker (requests one worker serves at once)")
    secret_key: SecretStr | None = Field(
        default=None,
        description="key that signs access tokens and web sessions; unset: a key kept in "
                    "var/secret_key (set the same one on every replica)")
    token_ttl: int = Field(default=DEFAULT_TOKEN_TTL, ge=60, le=7 * 24 * 3600,
                           description="access token lifetime, seconds")
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024,
                                description="largest request body, bytes")
    secure_cookies: bool = Field(
        default=False,
        description="1: the web session cookie is sent only over HTTPS (behind a TLS proxy)")
    public_url: str = Field(
        default=DEFAULT_PUBLIC_URL,
        description="address of the web app, for links in e-mails")
    embedded_scheduler: bool = Field(
        default=False, description="1: `nd73 serve` runs a scheduler in each worker")

    # --- sign-in ---------------------------------------------------------------------------
    password_sign_in: bool = Field(
        default=True,
        description="1: officials may sign in with a local password (the demo); 0: only "
                    "through the OpenID Connect provider")
    session_ttl: int = Field(
        default=DEFAULT_SESSION_TTL, ge=300, le=7 * 24 * 3600,
        description="seconds a web session lasts from its sign-in; then the user signs in "
                    "again")
    oidc_issuer: str | None = Field(
        default=None,
        description="issuer URL of the province's OpenID Connect provider (its "
                    "/.well-known/openid-configuration is read); unset: no single sign-on")
    oidc_client_id: str | None = Field(default=None,
                                       description="client id registered at the provider")
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="client secret registered at the provider")
    oidc_claim: str = Field(
        default="sub",
        description="claim of the provider's ID token (or userinfo) that an administrator "
                    "links to each official: sub, or e.g. preferred_username")
    oidc_scope: str = Field(default="openid profile email",
                            description="scopes asked of the provider")

    # --- scheduler and e-mail --------------------------------------------------------------
    scheduler_interval: float = Field(default=1.0, gt=0,
                                      description="seconds between scheduler rounds")
    smtp_host: str | None = Field(
        default=None,
        description="SMTP server schedulers send e-mail through; unset: this process sends "
                    "none (messages wait in the outbox)")
    smtp_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="SMTP port; unset: 25, 587 (starttls) or 465 (ssl)")
    smtp_tls: Literal["none", "starttls", "ssl"] = Field(
        default="none", description="none, starttls or ssl")
    smtp_user: str | None = Field(default=None,
                                  description="SMTP login (with ND73_SMTP_PASSWORD)")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password")
    smtp_sender: str = Field(default=DEFAULT_SENDER, description="the From of every e-mail")
    digest_hour: int = Field(
        default=DEFAULT_DIGEST_HOUR, ge=0, le=23,
        description="local hour (Asia/Ho_Chi_Minh) from which daily digests go out")

    # --- demo data -------------------------------------------------------------------------
    demo_password: SecretStr = Field(
        default=SecretStr(DEFAULT_DEMO_PASSWORD),
        description="password of every demo account `nd73 demo` seeds")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        # the process environment only: no .env file or secrets folder is read behind
        # the operator's back
        return init_settings, env_settings

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            make_url(value)
        except ArgumentError:
            raise ValueError(f"'{value}' is not a database URL (e.g. "
                             f"postgresql+psycopg://user:password@host:5432/nd73)") from None
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(f"use at least {MIN_SECRET_KEY_LENGTH} random characters")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"'{value}' must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("oidc_issuer")
    @classmethod
    def _issuer(cls, value: str | None) -> str | None:
        value = (value or "").strip() or None
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"'{value}' must start with https:// (or http:// on a test "
                             "machine)")
        return value.rstrip("/") if value else None

    @field_validator("oidc_claim", "oidc_scope")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("smtp_host", "smtp_user", "oidc_client_id")
    @classmethod
    def _stripped(cls, value: str | None) -> str | None:
        return (value or "").strip() or None

    @field_validator("smtp_sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError(f"'{value}' is not an e-mail address "
                             "(e.g. ND73 <no-reply@tinh.gov.vn>)")
        return value

    @model_validator(mode="after")
    def _smtp_login(self) -> "Settings":
        if (self.smtp_user is None) != (self.smtp_password is None):
            raise ValueError("ND73_SMTP_USER and ND73_SMTP_PASSWORD: set both or neither")
        return self

    @model_validator(mode="after")
    def _sign_in(self) -> "Settings":
        oidc = (self.oidc_issuer, self.oidc_client_id, self.oidc_client_secret)
        if any(v is not None for v in oidc) and any(v is None for v in oidc):
            raise ValueError("ND73_OIDC_ISSUER, ND73_OIDC_CLIENT_ID and "
                             "ND73_OIDC_CLIENT_SECRET: set all three or none")
        if not self.password_sign_in and self.oidc_issuer is None:
            raise ValueError("ND73_PASSWORD_SIGN_IN=0 needs ND73_OIDC_ISSUER: nobody could "
                             "sign in")
        return self

    @property
    def single_sign_on(self) -> bool:
        """Officials may sign in through the OpenID Connect provider."""
        return self.oidc_issuer is not None

    # --- building ---------------------------------------------------------------------------
    @classmethod
    def from_environment(cls) -> "Settings":
        """The settings of this process, from ``os.environ``; :class:`SettingsError` names
        every wrong variable."""
        try:
            return cls()
        except ValidationError as exc:
            raise SettingsError(_problems(exc)) from None

    @classmethod
    def defaults(cls, **values: Any) -> "Settings":
        """Settings from ``values`` (field names) and the defaults, never the environment:
        what a library caller or a test gets unless it passes settings of its own."""
        try:
            validated = _WithoutEnvironment(**values)
        except ValidationError as exc:
            raise SettingsError(_problems(exc)) from None
        # a Settings built the ordinary way would read the environment: copy the values
        # validated without it into one
        return cls.model_construct(_fields_set=validated.model_fields_set, **dict(validated))

    # --- derived values ---------------------------------------------------------------------
    @property
    def smtp(self) -> SmtpSettings | None:
        """How this process sends e-mail; None: it sends none."""
        if self.smtp_host is None:
            return None
        return SmtpSettings(
            host=self.smtp_host, port=self.smtp_port or DEFAULT_PORTS[self.smtp_tls],
            tls=self.smtp_tls, user=self.smtp_user,
            password=self.smtp_password.get_secret_value() if self.smtp_password else None,
            sender=self.smtp_sender)

    def effective(self) -> list[tuple[str, str, bool]]:
        """(variable, value shown, set in the environment) for every setting, secrets
        masked and the database password hidden."""
        rows = []
        for field in type(self).model_fields:
            value = getattr(self, field)
            if isinstance(value, SecretStr):
                shown = "********"
            elif field == "database_url":
                shown = make_url(value).render_as_string(hide_password=True)
            elif isinstance(value, bool):
                shown = "1" if value else "0"
            elif value is None:
                shown = "(unset)"
            else:
                shown = str(value)
            rows.append((variable(field), shown, field in self.model_fields_set))
        return rows


class _WithoutEnvironment(Settings):
    """Validates values given as arguments only (:meth:`Settings.defaults`)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        return (init_settings,)


def variable(field: str) -> str:
    return PREFIX + field.upper()


VARIABLES = tuple(variable(field) for field in Settings.model_fields)
_SECRET_FIELDS = {"secret_key", "smtp_password", "demo_password", "oidc_client_secret"}


def _problem(error: Mapping[str, Any]) -> str:
    """One line naming the variable and what is wrong with its value."""
    if not error["loc"]:                       # a rule across variables names them itself
        return str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
    field = str(error["loc"][0])
    kind, ctx = error["type"], error.get("ctx", {})
    given = "the value" if field in _SECRET_FIELDS else f"'{error['input']}'"
    if kind == "value_error":
        reason = str(ctx["error"])
    elif kind == "int_parsing":
        reason = f"{given} is not a whole number"
    elif kind == "float_parsing":
        reason = f"{given} is not a number"
    elif kind == "bool_parsing":
        reason = f"{given} must be 1 or 0"
    elif kind == "greater_than_equal":
        reason = f"{given} is less than {ctx['ge']:g}"
    elif kind == "greater_than":
        reason = f"{given} must be greater than {ctx['gt']:g}"
    elif kind == "less_than_equal":
        reason = f"{given} is more than {ctx['le']:g}"
    elif kind == "literal_error":
        reason = f"{given} must be one of {ctx['expected']}"
    else:
        reason = f"{given}: {error['msg']}"
    return f"{variable(field)}: {reason}"


def _problems(exc: ValidationError) -> list[str]:
    return [_problem(error) for error in exc.errors(include_url=False)]


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """Notes on ``ND73_*`` variables no setting reads (a misspelt name is ignored, not
    refused: say so, with the nearest name)."""
    notes = []
    for name in sorted(env):
        if not name.startswith(PREFIX) or name in VARIABLES or name in TEST_VARIABLES:
            continue
        near = difflib.get_close_matches(name, VARIABLES, n=1)
        notes.append(f"{name} is not a setting and is ignored"
                     + (f" (did you mean {near[0]}?)" if near else ""))
    return notes


def check(settings: Settings) -> tuple[list[str], list[str]]:
    """(problems, notes) of valid settings in this deployment: the database is reachable,
    no test-only setting is on, what the unset ones mean."""
    problems, notes = [], []
    url = make_url(settings.database_url)
    try:
        engine = create_engine(settings.database_url)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        finally:
            engine.dispose()
        notes.append(f"database reachable: {url.render_as_string(hide_password=True)}")
    except (SQLAlchemyError, ImportError) as exc:
        problems.append(f"ND73_DATABASE_URL: cannot connect ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]})")
    if settings.secret_key is None:
        notes.append("ND73_SECRET_KEY unset: a key kept in var/secret_key signs tokens "
                     "(set the same key on every replica in production)")
    if settings.smtp_host is None:
        notes.append("ND73_SMTP_HOST unset: this process sends no e-mail (messages wait in "
                     "the outbox for a scheduler that has it)")
    elif (smtp := settings.smtp) is not None:
        notes.append(f"e-mail through {smtp.host}:{smtp.port} ({smtp.tls})")
    if settings.single_sign_on:
        problem = _provider_problem(str(settings.oidc_issuer))
        if problem:
            problems.append(f"ND73_OIDC_ISSUER: {problem}")
        else:
            notes.append(f"single sign-on through {settings.oidc_issuer} (claim "
                         f"{settings.oidc_claim}); register the redirect URI "
                         f"{settings.public_url}/login/sso/callback")
    if not settings.password_sign_in:
        notes.append("ND73_PASSWORD_SIGN_IN=0: local passwords are refused")
    if settings.test_clock:
        problems.append("ND73_TEST_CLOCK=1 puts the engine on a manual clock: tests only")
    return problems, notes


def _provider_problem(issuer: str) -> str | None:
    """What is wrong with the identity provider at ``issuer``: its discovery document
    unreachable, or naming another issuer; None when it answers as it should."""
    import requests

    url = f"{issuer}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=10)
        response.raise_for_status()
        metadata = response.json()
    except (requests.RequestException, ValueError) as exc:
        return f"cannot read {url} ({type(exc).__name__})"
    if not isinstance(metadata, dict) or str(metadata.get("issuer", "")).rstrip("/") != issuer:
        found = metadata.get("issuer") if isinstance(metadata, dict) else None
        return f"{url} names the issuer {found!r}, not {issuer!r}"
    return None
