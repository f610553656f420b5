"""Sign-in through the province's OpenID Connect provider (authorization code with PKCE,
Authlib), and sign-out that ends the provider's session too when it offers
``end_session_endpoint`` (RP-initiated logout).

The provider's ID token (else its userinfo) gives the value of the configured claim
(``ND73_OIDC_CLAIM``, the subject by default); only an official an administrator linked to
that value signs in (:mod:`engine.identities`), and only while active. Every sign-in and
every refusal is in the audit log (the system chain).
"""
from __future__ import annotations

import logging
from urllib.parse import urlencode

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, Flask, current_app, redirect, request, session, url_for

from engine.config import Settings
from engine.errors import N_

from ..auth import start_session
from .web import engine, error_page, local_target

blp = Blueprint("sso", __name__)
log = logging.getLogger(__name__)
CALLBACK_PATH = "/login/sso/callback"
NEXT_KEY = "sso_next"


def install(app: Flask, settings: Settings) -> None:
    """Register the provider as an Authlib client (its metadata is read on first use)."""
    app.register_blueprint(blp)
    if not settings.single_sign_on:
        return
    oauth = OAuth(app)
    client = oauth.register(
        "idp", client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret.get_secret_value()
        if settings.oidc_client_secret else None,
        server_metadata_url=f"{settings.oidc_issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": settings.oidc_scope, "code_challenge_method": "S256",
                       "default_timeout": 15})
    app.extensions["nd73.idp"] = client


def _settings() -> Settings:
    return current_app.extensions["nd73.settings"]


def _client():
    return current_app.extensions.get("nd73.idp")


def redirect_uri() -> str:
    """The address the provider sends people back to: register it at the provider."""
    return _settings().public_url + CALLBACK_PATH


def _refused(status: int, code: str, reason: str, username: str | None = None, **details):
    engine().identities.record("sign_in_refused", username, method="oidc", reason=reason,
                               issuer=_settings().oidc_issuer, **details)
    return error_page(status, "forbidden" if status == 403 else "unauthenticated",
                      extra={"code": code, "params": details}, title=N_("sso_refused"))


@blp.route("/login/sso")
def start():
    client = _client()
    if client is None:
        return error_page(404, "not-found")
    session[NEXT_KEY] = local_target(request.args.get("next"))
    try:
        return client.authorize_redirect(redirect_uri())
    except (requests.RequestException, OAuthError, ValueError) as exc:
        log.warning("identity provider unreachable: %s", exc)
        return error_page(502, "unavailable", extra={"code": N_("sso.unreachable")},
                          title=N_("sso_refused"))


@blp.route(CALLBACK_PATH)
def callback():
    client = _client()
    if client is None:
        return error_page(404, "not-found")
    target = local_target(session.get(NEXT_KEY))
    if request.args.get("error"):
        # the person cancelled at the provider, or it refused them
        return _refused(401, N_("sso.provider_refused"), "provider_refused",
                        error=request.args.get("error", "")[:100])
    try:
        token = client.authorize_access_token()
        claims = dict(token.get("userinfo") or {})
        claim = _settings().oidc_claim
        if claim not in claims:             # a provider that keeps profile claims out of
            claims.update(client.userinfo(token=token))   # the ID token: ask userinfo
    except OAuthError as exc:
        log.info("sign-in through the provider failed: %s", exc)
        return _refused(401, N_("sso.provider_refused"), "token_refused",
                        error=str(exc.error)[:100])
    except requests.RequestException as exc:
        log.warning("identity provider unreachable: %s", exc)
        return error_page(502, "unavailable", extra={"code": N_("sso.unreachable")},
                          title=N_("sso_refused"))
    value = claims.get(claim)
    if not isinstance(value, str) or not value:
        return _refused(403, N_("sso.no_claim"), "no_claim", claim=claim)
    issuer = _settings().oidc_issuer or ""
    username = engine().identities.official_for(issuer, value)
    if username is None:
        return _refused(403, N_("sso.unknown_subject"), "unknown_subject", claim=claim,
                        value=value)
    if engine().access.principal(username) is None:
        return _refused(403, N_("sso.inactive"), "inactive", username, value=value)
    start_session(username, "oidc", id_token=token.get("id_token"))
    engine().identities.record("signed_in", username, method="oidc", issuer=issuer,
                               subject=value)
    return redirect(target)


def provider_logout(id_token: str | None):
    """Where sign-out ends: the provider's end_session_endpoint (back to our sign-in page
    afterwards) for a session that came from it, when the provider offers one; else None."""
    client = _client()
    if client is None or not id_token:
        return None
    try:
        end = client.load_server_metadata().get("end_session_endpoint")
    except (requests.RequestException, ValueError):
        return None
    if not end:
        return None
    query = urlencode({"id_token_hint": id_token, "client_id": _settings().oidc_client_id,
                       "post_logout_redirect_uri": _settings().public_url
                       + url_for("web.login")})
    return redirect(f"{end}{'&' if '?' in end else '?'}{query}")
