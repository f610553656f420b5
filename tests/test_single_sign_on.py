"""Officials sign in through the province's OpenID Connect provider — a real one, node
oidc-provider started on the loopback (tests/oidc) — with the authorization code flow and
PKCE: the provider's subject maps to an official only through the link an administrator
made; sign-out ends the session here and at the provider; an unknown subject, a deactivated
official and an expired session are refused; password sign-in can be turned off."""
from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import requests
from sqlalchemy import select

from engine.config import Settings, check
from engine.store import AuditEvent
from oidc_provider import ACCOUNTS, confirm_logout, product_with_sso, sign_in_at_provider
from api_client import LiveServer
from procedures import as_user, deploy_library

ADMIN = "laocai.quantri"
HEAD = "laocai.sxd.giamdoc"


def link(live, username: str, value: str) -> requests.Response:
    """The administrator links ``username`` to the provider's ``value`` (REST API)."""
    official = live.get("/org/lao-cai/officials?page_size=200", ADMIN).json()["items"]
    [row] = [o for o in official if o["username"] == username]
    return live.call("PUT", f"/org/lao-cai/officials/{username}", ADMIN,
                     json={"full_name": row["full_name"], "sso_subject": value})


def sso_sign_in(live, account, browser: requests.Session | None = None,
                next_path: str = "/") -> tuple[requests.Session, requests.Response]:
    browser = browser or requests.Session()
    page = browser.get(f"{live.url}/login/sso", params={"next": next_path}, timeout=30)
    assert page.status_code == 200, page.text[:300]
    return browser, sign_in_at_provider(browser, page, account)


def csrf(page: requests.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:300]
    return found.group(1)


def audit(engine, action: str) -> list[AuditEvent]:
    with engine.db.reading() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                    .order_by(AuditEvent.id)))


def test_an_official_signs_in_through_the_provider_and_out_of_both(engine):
    with product_with_sso(engine) as (live, idp):
        login = requests.get(f"{live.url}/login", timeout=30)
        assert "Đăng nhập qua hệ thống định danh (SSO)" in login.text
        assert link(live, HEAD, ACCOUNTS["giamdoc"].sub).json()["sso_subject"] == \
            ACCOUNTS["giamdoc"].sub

        # the request to the provider: code flow with PKCE (S256), back to our callback
        start = requests.get(f"{live.url}/login/sso", allow_redirects=False, timeout=30)
        asked = parse_qs(urlsplit(start.headers["Location"]).query)
        assert start.headers["Location"].startswith(idp.issuer)
        assert asked["response_type"] == ["code"] and asked["code_challenge_method"] == ["S256"]
        assert asked["redirect_uri"] == [f"{live.url}/login/sso/callback"]
        assert len(asked["code_challenge"][0]) >= 43 and "openid" in asked["scope"][0]

        browser, inbox = sso_sign_in(live, ACCOUNTS["giamdoc"], next_path="/proposals")
        assert inbox.status_code == 200 and urlsplit(inbox.url).path == "/proposals"
        me = browser.get(f"{live.url}/api/v1/me", timeout=30).json()
        assert me["username"] == HEAD
        [signed_in] = [e for e in audit(engine, "signed_in") if e.details["method"] == "oidc"]
        assert signed_in.actor == HEAD
        assert signed_in.details["subject"] == ACCOUNTS["giamdoc"].sub

        # sign-out ends the session here, then at the provider (RP-initiated logout)
        out = browser.post(f"{live.url}/logout", data={"csrf_token": csrf(inbox)},
                           allow_redirects=False, timeout=30)
        ending = out.headers["Location"]
        assert ending.startswith(f"{idp.issuer}/session/end")
        assert parse_qs(urlsplit(ending).query)["post_logout_redirect_uri"] == [
            f"{live.url}/login"]
        assert browser.get(f"{live.url}/api/v1/me", timeout=30).status_code == 401
        confirm = browser.get(ending, timeout=30)
        back = confirm_logout(browser, confirm)
        assert back.url.startswith(f"{live.url}/login")
        assert [e.actor for e in audit(engine, "signed_out")] == [HEAD]
        # the provider asks for the password again: its session ended too
        again = browser.get(f"{live.url}/login/sso", timeout=30)
        assert "/interaction/" in again.url and 'name="password"' in again.text


def test_check_config_reads_the_providers_discovery_document(engine, database_url):
    with product_with_sso(engine) as (live, idp):
        settings = Settings.defaults(database_url=database_url, oidc_issuer=idp.issuer,
                                     oidc_client_id="c", oidc_client_secret="s")
        problems, notes = check(settings)
        assert problems == [] and any(
            "register the redirect URI http://127.0.0.1:8000/login/sso/callback" in note
            for note in notes)
        wrong = settings.model_copy(update={"oidc_issuer": idp.issuer + "/realms/x"})
        problems, _ = check(wrong)
        assert problems == [f"ND73_OIDC_ISSUER: cannot read {idp.issuer}/realms/x/.well-known/"
                            "openid-configuration (HTTPError)"]


def test_a_subject_linked_to_nobody_is_refused(engine):
    with product_with_sso(engine) as (live, idp):
        link(live, HEAD, ACCOUNTS["giamdoc"].sub)
        # the stranger's preferred_username is irrelevant: only links count
        browser, refused = sso_sign_in(live, ACCOUNTS["khach"])
        assert refused.status_code == 403
        assert ACCOUNTS["khach"].sub in refused.text
        assert "chưa được liên kết với cán bộ nào" in refused.text
        assert browser.get(f"{live.url}/api/v1/me", timeout=30).status_code == 401
        [entry] = audit(engine, "sign_in_refused")
        assert entry.details["reason"] == "unknown_subject"
        assert entry.details["value"] == ACCOUNTS["khach"].sub
        # a subject cannot be linked to two officials
        taken = link(live, "laocai.sxd.qlxd.truongphong", ACCOUNTS["giamdoc"].sub)
        assert taken.status_code == 422 and taken.json()["code"] == "org.identity_taken"


def test_a_deactivated_official_is_refused_despite_a_valid_provider_session(engine):
    with product_with_sso(engine) as (live, idp):
        link(live, HEAD, ACCOUNTS["giamdoc"].sub)
        browser, inbox = sso_sign_in(live, ACCOUNTS["giamdoc"])
        assert browser.get(f"{live.url}/api/v1/me", timeout=30).json()["username"] == HEAD
        engine.orgadmin.set_active(as_user(engine, ADMIN), "lao-cai", HEAD, False)
        # the session here ends at once
        assert browser.get(f"{live.url}/api/v1/me", timeout=30).status_code == 401
        # and signing in again: the provider still knows them (no password asked) …
        again = browser.get(f"{live.url}/login/sso", timeout=30)
        assert "/interaction/" not in again.url
        # … but the product refuses
        assert again.status_code == 403 and "vô hiệu hoá" in again.text
        assert browser.get(f"{live.url}/api/v1/me", timeout=30).status_code == 401
        assert [e.details["reason"] for e in audit(engine, "sign_in_refused")] == ["inactive"]


def test_an_expired_session_sends_the_official_back_to_sign_in(engine, clock):
    with product_with_sso(engine, session_ttl=3600) as (live, idp):
        link(live, HEAD, ACCOUNTS["giamdoc"].sub)
        browser, inbox = sso_sign_in(live, ACCOUNTS["giamdoc"])
        clock.advance(timedelta(minutes=59))
        assert browser.get(f"{live.url}/", timeout=30).url == f"{live.url}/"
        clock.advance(timedelta(minutes=1, seconds=1))
        expired = browser.get(f"{live.url}/proposals", allow_redirects=False, timeout=30)
        assert expired.status_code == 302
        assert urlsplit(expired.headers["Location"]).path == "/login"
        page = browser.get(live.url + expired.headers["Location"], timeout=30)
        assert "Phiên đăng nhập đã hết hạn" in page.text
        assert browser.get(f"{live.url}/api/v1/me", timeout=30).status_code == 401


def test_the_claim_may_be_another_one_read_from_userinfo(engine):
    # the provider keeps profile claims out of its ID tokens: preferred_username comes from
    # its userinfo endpoint
    with product_with_sso(engine, oidc_claim="preferred_username") as (live, idp):
        link(live, HEAD, "giamdoc@sso")
        _, refused = sso_sign_in(live, ACCOUNTS["giamdoc"])
        assert refused.status_code == 403 and "laocai.sxd.giamdoc" in refused.text
        link(live, HEAD, "laocai.sxd.giamdoc")
        browser, inbox = sso_sign_in(live, ACCOUNTS["giamdoc"])
        assert browser.get(f"{live.url}/api/v1/me", timeout=30).json()["username"] == HEAD


def test_password_sign_in_can_be_turned_off(engine):
    with product_with_sso(engine, password_sign_in=False) as (live, idp):
        login = requests.get(f"{live.url}/login", timeout=30)
        assert 'name="password"' not in login.text and "/login/sso" in login.text
        refused = requests.post(f"{live.url}/api/v1/auth/token", timeout=30,
                                json={"username": HEAD, "password": "nd73-demo"})
        assert refused.status_code == 403
        # administrators give new officials an SSO link, not a password
        live.tokens[ADMIN] = _token_by_sso(live, engine)
        made = live.call("PUT", "/org/lao-cai/officials/laocai.sxd.nv001", ADMIN,
                         json={"full_name": "Cán bộ số 1", "password": "mat-khau-moi"})
        assert made.status_code == 422 and made.json()["code"] == "org.password_sign_in_off"
        made = live.call("PUT", "/org/lao-cai/officials/laocai.sxd.nv001", ADMIN,
                         json={"full_name": "Cán bộ số 1", "sso_subject": ACCOUNTS["nv001"].sub})
        assert made.status_code == 200, made.text
        browser, inbox = sso_sign_in(live, ACCOUNTS["nv001"])
        assert browser.get(f"{live.url}/api/v1/me", timeout=30).json()["username"] == \
            "laocai.sxd.nv001"


def _token_by_sso(live, engine) -> str:
    """The administrator's bearer token, for the API calls of a deployment without
    passwords: made as the app makes one (tests only)."""
    from api.auth import issue_token
    with live.app.test_request_context():
        return issue_token(as_user(engine, ADMIN))[0]


def test_without_single_sign_on_a_new_official_gets_an_initial_password(engine):
    deploy_library(engine)
    live = LiveServer(engine)
    try:
        made = live.call("PUT", "/org/lao-cai/officials/laocai.sxd.nv002", ADMIN,
                         json={"full_name": "Cán bộ số 2"})
        assert made.status_code == 200 and made.json()["sso_subject"] is None
        # no way in yet
        assert requests.post(f"{live.url}/api/v1/auth/token", timeout=30, json={
            "username": "laocai.sxd.nv002", "password": "!"}).status_code == 401
        linked = live.call("PUT", "/org/lao-cai/officials/laocai.sxd.nv002", ADMIN,
                           json={"full_name": "Cán bộ số 2", "sso_subject": "x"})
        assert linked.status_code == 422 and linked.json()["code"] == "org.sso_not_configured"
        imported = live.post("/org/lao-cai/import", ADMIN, data={"apply": "1"}, files={
            "file": ("can-bo.csv", _csv([["laocai.sxd.nv002", "Cán bộ số 2", "", "",
                                          "laocai.sxd.gt", "staff", "", "", "1", "x"]]))})
        assert imported.status_code == 422
        assert [(e["column"], e["code"]) for e in imported.json()["errors"]] == [
            ("sso_subject", "org.sso_not_configured")]
        given = live.call("PUT", "/org/lao-cai/officials/laocai.sxd.nv002", ADMIN,
                          json={"full_name": "Cán bộ số 2", "password": "mat-khau-ban-dau"})
        assert given.status_code == 200, given.text
        assert live.token("laocai.sxd.nv002", "mat-khau-ban-dau")
        # the official's page offers the password, not a provider account
        web = requests.Session()
        login = web.get(f"{live.url}/login", timeout=30)
        assert "/login/sso" not in login.text
        web.post(f"{live.url}/login", timeout=30, data={
            "csrf_token": csrf(login), "username": ADMIN, "password": "nd73-demo"})
        page = web.get(f"{live.url}/admin/org/lao-cai/officials/laocai.sxd.nv002", timeout=30)
        assert 'name="password"' in page.text and 'name="sso_subject"' not in page.text
        assert "cán bộ mới cần được đặt mật khẩu ban đầu" in page.text
        assert [e.actor for e in audit(engine, "signed_in")] == [ADMIN]
    finally:
        live.stop()


def _csv(rows: list[list[str]]) -> bytes:
    header = "username,full_name,email,phone,unit_id,position,valid_from,valid_to,active," \
             "sso_subject"
    return "\n".join([header, *(",".join(r) for r in rows)]).encode()


def test_an_import_links_officials_to_the_provider(engine):
    with product_with_sso(engine, password_sign_in=False) as (live, idp):
        live.tokens[ADMIN] = _token_by_sso(live, engine)
        nv001 = ["laocai.sxd.nv001", "Cán bộ số 1", "", "", "laocai.sxd.gt", "staff", "", "",
                 "1", ACCOUNTS["nv001"].sub]
        # a value given to two officials: the row is named, nothing is imported
        clash = ["laocai.sxd.nv002", "Cán bộ số 2", "", "", "laocai.sxd.gt", "staff", "", "",
                 "1", ACCOUNTS["nv001"].sub]
        refused = live.post("/org/lao-cai/import", ADMIN, data={"apply": "1"},
                            files={"file": ("can-bo.csv", _csv([nv001, clash]))})
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["errors"]
        assert (error["row"], error["column"], error["code"]) == (
            3, "sso_subject", "org.import_identity_taken")
        assert engine.identities.official_for(idp.issuer, ACCOUNTS["nv001"].sub) is None

        done = live.post("/org/lao-cai/import", ADMIN, data={"apply": "1"},
                         files={"file": ("can-bo.csv", _csv([nv001]))})
        assert done.status_code == 200 and done.json()["linked"] == ["laocai.sxd.nv001"]
        assert engine.identities.official_for(idp.issuer, ACCOUNTS["nv001"].sub) == \
            "laocai.sxd.nv001"
        browser, inbox = sso_sign_in(live, ACCOUNTS["nv001"])
        assert browser.get(f"{live.url}/api/v1/me", timeout=30).json()["username"] == \
            "laocai.sxd.nv001"

        # the export carries each official's link: it imports again unchanged, and gives
        # back a link removed since
        exported = live.get("/org/lao-cai/export", ADMIN, params={"format": "csv"})
        assert exported.status_code == 200, exported.text
        rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
        assert rows[0][-1] == "sso_subject"
        assert [r[-1] for r in rows if r[0] == "laocai.sxd.nv001"] == [ACCOUNTS["nv001"].sub]
        same = live.post("/org/lao-cai/import", ADMIN, data={"apply": "1"},
                         files={"file": ("export.csv", exported.content)}).json()
        assert (same["errors"], same["added"], same["linked"]) == ([], [], [])
        assert link(live, "laocai.sxd.nv001", "").json()["sso_subject"] is None
        assert engine.identities.official_for(idp.issuer, ACCOUNTS["nv001"].sub) is None
        restored = live.post("/org/lao-cai/import", ADMIN, data={"apply": "1"},
                             files={"file": ("export.csv", exported.content)}).json()
        assert (restored["errors"], restored["linked"]) == ([], ["laocai.sxd.nv001"])
        assert engine.identities.official_for(idp.issuer, ACCOUNTS["nv001"].sub) == \
            "laocai.sxd.nv001"
