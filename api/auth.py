"""Bearer tokens: signed, expiring, bound to a user that must still be active."""
from __future__ import annotations

import functools
import secrets
from pathlib import Path

from flask import Flask, after_this_request, current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from engine.access import Principal
from engine.errors import InvalidData

from .problems import ApiProblem

TOKEN_SALT = "nd73-access-token"
DEVICE_SALT = "nd73-device"
DEVICE_COOKIE = "nd73_device"
DEVICE_DAYS = 365


def secret_key(var_dir: Path, configured: str | None = None) -> str:
    """``configured`` (``ND73_SECRET_KEY``), else a key made once and kept in ``var/``
    (one-machine setups)."""
    if configured:
        return configured
    path = var_dir / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=TOKEN_SALT)


def issue_token(principal: Principal) -> tuple[str, int]:
    ttl = current_app.config["TOKEN_TTL"]
    return _serializer().dumps({"u": principal.username}), ttl


def trusted_device(username: str) -> str | None:
    """The id of the device this request comes from when it signed in as ``username``
    before (its signed cookie), else None: its failed sign-ins are then counted apart."""
    value = request.cookies.get(DEVICE_COOKIE)
    if not value:
        return None
    serializer = URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=DEVICE_SALT)
    try:
        payload = serializer.loads(value, max_age=DEVICE_DAYS * 86400)
    except BadSignature:                    # forged, another key's, or expired
        return None
    if not isinstance(payload, dict) or payload.get("u") != username:
        return None
    device = payload.get("d")
    return device if isinstance(device, str) else None


def remember_device(username: str, device: str | None) -> None:
    """After a successful sign-in: the response gives (or renews) the device cookie."""
    payload = {"u": username, "d": device or secrets.token_urlsafe(16)}
    value = URLSafeTimedSerializer(current_app.config["SECRET_KEY"],
                                   salt=DEVICE_SALT).dumps(payload)

    @after_this_request
    def set_cookie(response):
        response.set_cookie(DEVICE_COOKIE, value, max_age=DEVICE_DAYS * 86400, httponly=True,
                            samesite="Lax", secure=current_app.config["SESSION_COOKIE_SECURE"])
        return response


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with their signer made once per key (Flask makes it
    anew at every request, bearer requests included, which carry no session cookie: a tenth
    of a millisecond each)."""

    def __init__(self) -> None:
        self._signers: dict = {}

    def get_signing_serializer(self, app: Flask):
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        signer = self._signers.get(keys)
        if signer is None and app.secret_key:
            signer = self._signers[keys] = super().get_signing_serializer(app)
        return signer


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSRF_HEADER = "X-CSRF-Token"


SIGNED_IN_AT = "signed_in_at"      # the engine clock's POSIX time of the sign-in
ID_TOKEN = "id_token"              # the provider's ID token of a single sign-on session


def start_session(username: str, method: str, id_token: str | None = None) -> None:
    """A new web session for ``username`` (a new id and anti-forgery token, the page's
    language kept), lasting ``ND73_SESSION_TTL`` by the engine's clock."""
    language = session.get("lang")
    session.clear()
    session.permanent = True
    session["user"] = username
    session["auth"] = method
    session[SIGNED_IN_AT] = current_app.extensions["nd73"].clock.now().timestamp()
    if id_token:
        session[ID_TOKEN] = id_token
    if language:
        session["lang"] = language
    csrf_token()


def session_expired() -> bool:
    """The session's sign-in is older than ``ND73_SESSION_TTL`` by the engine's clock."""
    started = session.get(SIGNED_IN_AT)
    if not isinstance(started, (int, float)):
        return False
    now = current_app.extensions["nd73"].clock.now().timestamp()
    return now - started > current_app.config["SESSION_TTL"]


def session_username() -> str | None:
    """The user signed in to the web app (Flask's signed session cookie), if any and if
    the session has not expired (an expired one is forgotten)."""
    username = session.get("user")
    if not isinstance(username, str):
        return None
    if session_expired():
        session.pop("user", None)
        session.pop(ID_TOKEN, None)
        g.session_expired = True
        return None
    return username


def csrf_token() -> str:
    """The web session's anti-forgery token, made on first use."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_valid(sent: str | None) -> bool:
    expected = session.get("csrf")
    return (isinstance(expected, str) and isinstance(sent, str)
            and secrets.compare_digest(expected, sent))


def _principal_from_session(username: str) -> Principal:
    # A cookie travels with cross-site requests too: writes must prove they come from our
    # own pages by echoing the session's token in a header no other site can set.
    if request.method not in SAFE_METHODS and not csrf_valid(request.headers.get(CSRF_HEADER)):
        raise ApiProblem("forbidden", f"web session requests that change data must send the "
                                      f"{CSRF_HEADER} header of the page")
    principal = current_app.extensions["nd73"].access.principal(username)
    if principal is None:
        session.clear()
        raise ApiProblem("unauthenticated", "the account no longer exists or is disabled")
    return principal


def _principal_from_request() -> Principal:
    header = request.headers.get("Authorization", "")
    if not header and (username := session_username()):
        return _principal_from_session(username)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiProblem("unauthenticated", "send 'Authorization: Bearer <access_token>' "
                                            "from POST /api/v1/auth/token")
    try:
        payload = _serializer().loads(token.strip(), max_age=current_app.config["TOKEN_TTL"])
    except SignatureExpired:
        raise ApiProblem("unauthenticated", "the access token expired") from None
    except BadSignature:
        raise ApiProblem("unauthenticated", "the access token is not valid") from None
    username = payload.get("u") if isinstance(payload, dict) else None
    principal = current_app.extensions["nd73"].access.principal(username) if username else None
    if principal is None:
        raise ApiProblem("unauthenticated", "the account no longer exists or is disabled")
    return principal


def authenticated(view):
    """Require a valid bearer token (or the web app's session); the caller is
    ``g.principal``."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if "principal" not in g:
            g.principal = _principal_from_request()
        return view(*args, **kwargs)
    wrapper.requires_principal = True   # copied onto the outer wrappers by functools.wraps
    return wrapper


def authenticate_first() -> None:
    """Before any view: who calls is settled before the body and query are parsed, so a
    caller without a valid token gets 401, not a description of what the body lacks."""
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "requires_principal", False):
        g.principal = _principal_from_request()


def current() -> Principal:
    return g.principal


def official_credentials(password: str | None, sso_subject: str | None
                         ) -> tuple[str | None, tuple[str, str] | None]:
    """What an administrator may give an official to sign in with, as this deployment signs
    in: a local password while password sign-in is on, a link to the identity provider
    (issuer, value of its claim; "" unlinks) when single sign-on is configured."""
    settings = current_app.extensions["nd73.settings"]
    if password and not settings.password_sign_in:
        raise InvalidData("password sign-in is off here (ND73_PASSWORD_SIGN_IN=0): link the "
                          "official to the identity provider instead",
                          code="org.password_sign_in_off")
    if sso_subject is None:
        return password, None
    if not settings.single_sign_on:
        raise InvalidData("single sign-on is not configured here (ND73_OIDC_ISSUER)",
                          code="org.sso_not_configured")
    return password, (settings.oidc_issuer, sso_subject)
