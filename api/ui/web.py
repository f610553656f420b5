"""Sign-in, the web session, anti-forgery tokens, language and the pages' common frame."""
from __future__ import annotations

import functools
from datetime import timedelta
from urllib.parse import urlsplit

import flask_babel
from flask import (Blueprint, Flask, current_app, flash, g, redirect, render_template, request,
                   session, url_for)

from engine.access import Principal
from engine.errors import N_

from ..auth import (ID_TOKEN, csrf_valid, csrf_token, remember_device, session_username,
                    start_session, trusted_device)
from . import i18n

blp = Blueprint("web", __name__, template_folder="templates")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Pages load only our own files; bpmn-js draws with inline styles and data: URLs.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' "
                           "'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
                           "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
                           "base-uri 'none'; object-src 'none'")


def engine():
    return current_app.extensions["nd73"]


def principal() -> Principal:
    return g.principal


def signed_in(view):
    """Pages for signed-in people; others go to the sign-in page and come back."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        username = session_username()
        found = engine().access.principal(username) if username else None
        if found is None:
            session.pop("user", None)
            if g.get("session_expired"):
                flash(i18n.t("session_ended"), "error")
            return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
        g.principal = found
        return view(*args, **kwargs)
    return wrapper


def page_number() -> int:
    """The ``page`` query argument of a list, within sane bounds."""
    return max(1, min(request.args.get("page", 1, type=int), 10_000))


def _is_page(path: str) -> bool:
    return not path.startswith(("/api/", "/static/", "/healthz", "/readyz", "/metrics"))


def local_target(target: str | None) -> str:
    """Only paths of this site (no ``//host`` or ``https://``): no open redirect."""
    if not target:
        return url_for("officials.inbox")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("officials.inbox")
    return target


def _content_security_policy(app: Flask) -> str:
    """Our own files only; forms may also lead to the identity provider (sign-out ends its
    session through a redirect, which browsers check against form-action)."""
    settings = app.extensions.get("nd73.settings")
    issuer = getattr(settings, "oidc_issuer", None)
    if not issuer:
        return CONTENT_SECURITY_POLICY
    parts = urlsplit(issuer)
    return CONTENT_SECURITY_POLICY.replace("form-action 'self'",
                                           f"form-action 'self' {parts.scheme}://{parts.netloc}")


def sign_in_options() -> dict:
    """Which ways of signing in the login page offers."""
    settings = current_app.extensions["nd73.settings"]
    return {"password_sign_in": settings.password_sign_in,
            "single_sign_on": "nd73.idp" in current_app.extensions}


def install(app: Flask) -> None:
    policy = _content_security_policy(app)
    app.config.setdefault("SESSION_COOKIE_NAME", "nd73_session")
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.config.setdefault("SESSION_COOKIE_SECURE", False)     # ND73_SECURE_COOKIES: create_app
    app.config.setdefault("PERMANENT_SESSION_LIFETIME", timedelta(hours=8))
    app.jinja_env.globals.update(t=i18n.t, label=i18n.label,
                                 stage_label=i18n.stage_label, action_label=i18n.action_label,
                                 status_label=i18n.status_label,
                                 timer_kind_label=i18n.timer_kind_label,
                                 preference_label=i18n.preference_label,
                                 csrf_token=csrf_token)
    app.jinja_env.filters.update(date=i18n.format_date, datetime=i18n.format_datetime,
                                 money=i18n.format_money, compact_json=i18n.compact_json)
    app.extensions["nd73.error_page"] = (
        lambda *problem: error_page(*problem) if _is_page(request.path) else None)

    @app.before_request
    def web_request():
        if not _is_page(request.path):
            return None
        g.lang = i18n.choose_language()
        if request.method not in SAFE_METHODS:
            sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token")
            if not csrf_valid(sent):
                return error_page(403, "forbidden", "CSRF token missing or wrong",
                                  title=N_("session_expired"))
        return None

    @app.after_request
    def page_headers(response):
        if _is_page(request.path) and response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", policy)
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.context_processor
    def frame():
        found = getattr(g, "principal", None)
        return {"me": found, "lang": getattr(g, "lang", "vi"),
                "unread": _unread(found) if found else 0,
                "has_notifications": "notification_centre.page" in current_app.view_functions}


def _unread(found: Principal) -> int:
    notifications = getattr(engine(), "notifications", None)
    return notifications.unread_count(found.username) if notifications else 0


def error_page(status: int, kind: str, detail: str | None = None, extra: dict | None = None,
               *, title: str | None = None):
    """A problem as a page in the page's language: its title, and what was wrong when the
    problem carries a message code. A detail without one is a developer's English sentence,
    shown on English pages only."""
    if getattr(g, "lang", None) is None:       # refused before the page's language was read
        g.lang = i18n.choose_language()
        flask_babel.refresh()
    extra = extra or {}
    said = i18n.say(extra.get("code"), extra.get("params"))
    if said is None and g.lang == "en":
        said = detail
    return render_template("error.html", status=status, title=i18n.t(title or f"problem.{kind}"),
                           detail=said), status


@blp.route("/login", methods=["GET", "POST"])
def login():
    target = local_target(request.values.get("next"))
    options = sign_in_options()
    if request.method == "GET":
        return render_template("login.html", next=target, **options)
    if not options["password_sign_in"]:
        flash(i18n.t("password_sign_in_off"), "error")
        return render_template("login.html", next=target, **options), 403
    access = engine().access
    username = (request.form.get("username") or "").strip()[:128]
    address = request.remote_addr or "unknown"
    device = trusted_device(username)
    if access.locked_out(username, address, device):
        flash(i18n.t("locked_out"), "error")
        return render_template("login.html", next=target, username=username, **options), 429
    found = access.authenticate(username, request.form.get("password") or "", address, device)
    if found is None:
        flash(i18n.t("wrong_credentials"), "error")
        return render_template("login.html", next=target, username=username, **options), 401
    start_session(found.username, "password")     # a new session id and token
    remember_device(found.username, device)
    engine().identities.record("signed_in", found.username, method="password")
    return redirect(target)


@blp.route("/logout", methods=["POST"])
def logout():
    from .sso import provider_logout
    language, id_token = session.get("lang"), session.get(ID_TOKEN)
    username = session.get("user")
    session.clear()
    if language:
        session["lang"] = language
    if isinstance(username, str):
        engine().identities.record("signed_out", username,
                                   method="oidc" if id_token else "password")
    return provider_logout(id_token) or redirect(url_for("web.login"))


@blp.route("/language", methods=["POST"])
def language():
    chosen = request.form.get("lang")
    if chosen in i18n.LANGUAGES:
        session["lang"] = chosen
    return redirect(local_target(request.form.get("next")))
