"""A real HTTP server (werkzeug, threaded, on loopback) around the app, and a client that
signs in as the demo users."""
from __future__ import annotations

import threading

import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from api.app import create_app
from engine.org import DEFAULT_DEMO_PASSWORD


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


class LiveServer:
    def __init__(self, engine, settings=None, port: int = 0, **config):
        self.app = create_app(engine, settings, SECRET_KEY="test-secret", **config)
        self.server = make_server("127.0.0.1", port, self.app, threaded=True,
                                  request_handler=QuietHandler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.tokens: dict[str, str] = {}

    def stop(self):
        self.server.shutdown()
        self.thread.join(timeout=10)

    def token(self, username: str, password: str = DEFAULT_DEMO_PASSWORD) -> str:
        if username not in self.tokens:
            response = requests.post(f"{self.url}/api/v1/auth/token",
                                     json={"username": username, "password": password},
                                     timeout=30)
            assert response.status_code == 200, response.text
            self.tokens[username] = response.json()["access_token"]
        return self.tokens[username]

    def call(self, method: str, path: str, user: str | None = None, **kwargs):
        headers = kwargs.pop("headers", {})
        if user is not None:
            headers["Authorization"] = f"Bearer {self.token(user)}"
        return requests.request(method, f"{self.url}/api/v1{path}", headers=headers,
                                timeout=60, **kwargs)

    def get(self, path, user=None, **kw):
        return self.call("GET", path, user, **kw)

    def post(self, path, user=None, **kw):
        return self.call("POST", path, user, **kw)
