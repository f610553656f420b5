"""Two API processes and two schedulers on one database, as replicas run in production:
requests spread across both APIs, every instance advances, every timer fires once, and a
task completed through one API is gone from the other's inbox at once."""
from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from engine.access import Principal
from engine.store import AuditEvent, Instance

from conftest import PROJECT, bpmn_source, child_environment
from procedures import SCREENED, deploy_library, plan

ND73 = Path(sys.executable).with_name("nd73")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(url: str, env: dict) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen([str(ND73), "serve"], cwd=PROJECT, text=True,
                               env={**env, "ND73_PORT": str(port)},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in process.stdout:
        if "Booting worker" in line:
            break
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/readyz", timeout=5)
            return process, base
        except urllib.error.URLError:
            assert process.poll() is None
    raise AssertionError("the API never became ready")


@pytest.fixture
def replicas(engine):
    deploy_library(engine)
    engine.repository.deploy("national", [bpmn_source("timers.bpmn")], "designer")
    env = {**child_environment(), "ND73_DATABASE_URL": engine.db.url,
           "ND73_SECRET_KEY": "one-key-shared-by-every-replica-0123456789"}
    servers = [_serve(engine.db.url, env) for _ in range(2)]
    yield engine, [base for _, base in servers], env
    for process, _ in servers:
        process.terminate()
        process.wait(timeout=30)


class Client:
    def __init__(self, bases):
        self.bases, self.turn, self.tokens = bases, 0, {}

    def next_base(self) -> str:
        self.turn += 1
        return self.bases[self.turn % 2]

    def token(self, user):
        if user not in self.tokens:        # signed in on one replica, used on both
            response = requests.post(self.next_base() + "/api/v1/auth/token", timeout=30,
                                     json={"username": user, "password": "nd73-demo"})
            self.tokens[user] = response.json()["access_token"]
        return self.tokens[user]

    def call(self, method, path, user, base=None, **kwargs):
        base = base or self.next_base()
        return requests.request(method, base + "/api/v1" + path, timeout=60,
                                headers={"Authorization": f"Bearer {self.token(user)}"},
                                **kwargs)


def test_requests_spread_over_two_apis_see_one_state(replicas):
    engine, bases, _ = replicas
    client = Client(bases)
    proposer, head = "laocai.sxd.qlxd.truongphong", "laocai.sxd.giamdoc"
    instance = client.call("POST", "/instances", proposer, base=bases[0], json={
        "definition_key": "proposal", "variant": "lao-cai"}).json()
    [draft] = client.call("GET", "/tasks", proposer, base=bases[1],
                          params={"instance_id": instance["id"]}).json()["items"]
    assert client.call("POST", f"/tasks/{draft['id']}/complete", proposer, base=bases[1],
                       json={"data": plan()}).status_code == 200
    [screening] = client.call("GET", "/tasks", head, base=bases[0],
                              params={"instance_id": instance["id"]}).json()["items"]
    assert screening["element_id"] == "screening"
    done = client.call("POST", f"/tasks/{screening['id']}/complete", head, base=bases[1],
                       json={"data": {**SCREENED, "is_complex": False}})
    assert done.status_code == 200
    on_other = client.call("GET", "/tasks", head, base=bases[0],
                           params={"instance_id": instance["id"]}).json()["items"]
    assert screening["id"] not in [t["id"] for t in on_other]
    again = client.call("POST", f"/tasks/{screening['id']}/complete", head, base=bases[0],
                        json={"data": {**SCREENED, "is_complex": False}})
    assert again.status_code == 409
    detail = client.call("GET", f"/instances/{instance['id']}", head).json()
    assert sorted(detail["active_elements"]) == [
        "party_opinion", "party_opinion_escalation", "party_opinion_reminder"]


def test_two_schedulers_fire_every_timer_once(replicas):
    engine, _, env = replicas
    count = 60
    for _ in range(count):
        engine.runtime.start("national", "wait_then_go", principal=Principal.system("load"),
                             data={"wait": "PT1H"})       # due long before the real now
    schedulers = [subprocess.Popen([str(ND73), "scheduler", "--once"], cwd=PROJECT, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in schedulers]
    assert all(p.returncode == 0 for p in schedulers), [e[-1000:] for _, e in outputs]
    with engine.db.reading() as session:
        fired = session.execute(select(AuditEvent.instance_id, func.count())
                                .where(AuditEvent.action == "timers_fired")
                                .group_by(AuditEvent.instance_id)).all()
        completed = session.scalar(select(func.count(Instance.id)).where(
            Instance.definition_key == "wait_then_go", Instance.status == "completed"))
    assert len(fired) == count and {n for _, n in fired} == {1} and completed == count
