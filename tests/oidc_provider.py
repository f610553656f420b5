"""The tests' OpenID Connect provider: node oidc-provider (tests/oidc/provider.js, installed
from npm by ``make install``), started on the loopback for one test and stopped after it.
Its accounts are those of provider.js (:data:`ACCOUNTS`)."""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import requests

HERE = Path(__file__).parent / "oidc"
CLIENT_ID, CLIENT_SECRET = "nd73-workflow", "nd73-test-client-secret-0123456789"


@dataclass(frozen=True)
class Account:
    login: str
    password: str
    sub: str


# as tests/oidc/provider.js defines them
ACCOUNTS = {
    "nv001": Account("nv001", "idp-nv001", "5f0c2a9e-0001-4b7e-9d1c-laocai-nv001"),
    "truongphong": Account("truongphong", "idp-truongphong",
                           "5f0c2a9e-0002-4b7e-9d1c-laocai-qlxd"),
    "giamdoc": Account("giamdoc", "idp-giamdoc", "5f0c2a9e-0003-4b7e-9d1c-laocai-sxd"),
    "khach": Account("khach", "idp-khach", "5f0c2a9e-0009-4b7e-9d1c-stranger"),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Provider:
    issuer: str
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET


@contextmanager
def oidc_provider(app_url: str) -> Iterator[Provider]:
    """A provider whose one client is the product at ``app_url``."""
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (HERE / "node_modules" / "oidc-provider").exists(), \
        "tests/oidc/node_modules is missing: run make install"
    port = free_port()
    process = subprocess.Popen(
        [node, "provider.js", str(port), CLIENT_ID, CLIENT_SECRET,
         f"{app_url}/login/sso/callback", f"{app_url}/login"],
        cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("ready "), f"the provider did not start: {line!r}"
        yield Provider(issuer=line.split()[1])
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def product_with_sso(engine, **settings):
    """The product (a live server over ``engine``, the variants deployed and their demo
    organisations seeded) and its provider, single sign-on configured (``settings``: more
    of the product's settings)."""
    from api_client import LiveServer
    from engine.config import Settings
    from procedures import deploy_library

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with oidc_provider(url) as idp:
        deploy_library(engine)
        configured = Settings.defaults(oidc_issuer=idp.issuer, oidc_client_id=idp.client_id,
                                       oidc_client_secret=idp.client_secret, public_url=url,
                                       **settings)
        live = LiveServer(engine, configured, port)
        try:
            yield live, idp
        finally:
            live.stop()


def sign_in_at_provider(browser: requests.Session, page: requests.Response,
                        account: Account) -> requests.Response:
    """Fill the provider's sign-in page ``page`` as ``account``; what follows the form."""
    assert "/interaction/" in page.url, page.url
    return browser.post(page.url, data={"login": account.login, "password": account.password},
                        timeout=30)


def confirm_logout(browser: requests.Session, page: requests.Response) -> requests.Response:
    """Answer yes on the provider's sign-out confirmation page ``page``."""
    action = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    xsrf = re.search(r'name="xsrf" value="([^"]+)"', page.text)
    assert action and xsrf, page.text[:500]
    target = requests.compat.urljoin(page.url, action.group(1))
    return browser.post(target, data={"xsrf": xsrf.group(1), "logout": "yes"}, timeout=30)
