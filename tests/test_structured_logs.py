"""Structured logs: every line one JSON object with its time, level, logger and message, and
the request id, user and instance id of the work it belongs to."""
from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from api_client import LiveServer
from conftest import ALICE, PROJECT, bpmn_source, child_environment
from engine.logs import json_handler
from engine.scheduler import Scheduler
from procedures import deploy_library, plan

ND73 = Path(sys.executable).with_name("nd73")
PROPOSER = "laocai.sxd.qlxd.truongphong"


def parse(text: str) -> list[dict]:
    """Each line as JSON, with the fields every line has checked."""
    lines = []
    for line in text.splitlines():
        entry = json.loads(line)              # fails the test on any line that is not JSON
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message"} <= set(entry), line
        at = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
        assert entry["time"].endswith("Z") and at.utcoffset() == timezone.utc.utcoffset(at)
        lines.append(entry)
    return lines


@pytest.fixture
def log_lines():
    """The JSON lines logged while the test runs, as the server's handler writes them."""
    stream = io.StringIO()
    handler = json_handler(stream)
    root, ours = logging.getLogger(), logging.getLogger("nd73")
    level = ours.level
    root.addHandler(handler)
    ours.setLevel(logging.INFO)
    yield lambda: parse(stream.getvalue())
    root.removeHandler(handler)
    ours.setLevel(level)


def test_a_request_line_names_its_request_id_user_and_instance(engine, log_lines):
    deploy_library(engine)
    server = LiveServer(engine)
    try:
        started = server.post("/instances", PROPOSER, headers={"X-Request-ID": "start-1"},
                              json={"definition_key": "proposal", "variant": "lao-cai"})
        assert started.status_code == 201, started.text
        instance_id = started.json()["id"]
        [task] = server.get("/tasks", PROPOSER, params={"instance_id": instance_id}
                            ).json()["items"]
        # the path names the task only: the instance is learnt when the step runs
        done = server.post(f"/tasks/{task['id']}/complete", PROPOSER,
                           headers={"X-Request-ID": "complete-1"}, json={"data": plan()})
        assert done.status_code == 200, done.text
        refused = server.get(f"/instances/{instance_id}", headers={"X-Request-ID": "anon-1"})
        assert refused.status_code == 401
    finally:
        server.stop()
    requests_logged = {e["request_id"]: e for e in log_lines()
                       if e["logger"] == "nd73.requests" and "request_id" in e}
    for request_id, path in (("start-1", "/api/v1/instances"),
                             ("complete-1", f"/api/v1/tasks/{task['id']}/complete")):
        entry = requests_logged[request_id]
        assert (entry["user"], entry["instance_id"], entry["path"]) == \
            (PROPOSER, instance_id, path)
        assert entry["level"] == "INFO" and entry["status"] in (200, 201)
    # refused before anyone is known: the id and the instance of the path, no user
    anonymous = requests_logged["anon-1"]
    assert anonymous["status"] == 401 and anonymous["instance_id"] == instance_id
    assert "user" not in anonymous


def test_a_fired_timer_line_names_its_round_and_instance(engine, clock, log_lines):
    engine.repository.deploy("national", [bpmn_source("timers.bpmn")], "designer")
    waiting = engine.runtime.start("national", "wait_then_go", principal=ALICE,
                                   data={"wait": "PT1H"})
    other = engine.runtime.start("national", "wait_then_go", principal=ALICE,
                                 data={"wait": "PT3H"})
    clock.advance(hours=2)
    assert Scheduler(engine, owner="s3", smtp=None).run_due() == 1
    [fired] = [e for e in log_lines() if e["logger"] == "nd73.scheduler"]
    assert fired["instance_id"] == waiting.id != other.id
    assert (fired["request_id"], fired["user"]) == ("s3/timers/1", "scheduler")
    assert fired["level"] == "INFO" and "fired" in fired["message"] and fired["timer_id"]
    # outside the timer's work, lines carry no instance
    logging.getLogger("nd73.test").info("after the round")
    assert "instance_id" not in log_lines()[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_and_scheduler_processes_write_only_json_lines(engine, clock):
    """What the processes print, gunicorn's own lines included, as an operator reads it."""
    engine.repository.deploy("national", [bpmn_source("timers.bpmn")], "designer")
    instance = engine.runtime.start("national", "wait_then_go", principal=ALICE,
                                    data={"wait": "PT1H"})     # due long ago, really
    env = {**child_environment(), "ND73_DATABASE_URL": engine.db.url}
    env.pop("ND73_TEST_CLOCK", None)
    scheduler = subprocess.run([str(ND73), "scheduler", "--once"], env=env, cwd=PROJECT,
                               capture_output=True, text=True, timeout=120)
    assert scheduler.returncode == 0, scheduler.stderr
    assert "fired 1 timer(s)" in scheduler.stdout
    fired = [e for e in parse(scheduler.stderr) if e["logger"] == "nd73.scheduler"]
    assert [e["instance_id"] for e in fired] == [instance.id]

    port = _free_port()
    server = subprocess.Popen([str(ND73), "serve"], env={**env, "ND73_PORT": str(port)},
                              cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    output = []
    try:
        for line in server.stdout:                  # gunicorn says when a worker starts
            output.append(line)
            if "Booting worker" in line:
                break
        else:
            raise AssertionError("the server stopped before listening:\n" + "".join(output))
        request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz",
                                         headers={"X-Request-ID": "probe-7"})
        for _ in range(100):                        # the worker imports the app, then serves
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    assert response.status == 200
                    break
            except urllib.error.URLError:
                assert server.poll() is None
        else:
            raise AssertionError("/healthz never answered")
    finally:
        server.terminate()
        output.append(server.communicate(timeout=30)[0])
    lines = parse("".join(output))
    assert any(e["logger"] == "gunicorn.error" and "Booting worker" in e["message"]
               for e in lines)
    [probe] = [e for e in lines if e.get("request_id") == "probe-7"]
    assert probe["path"] == "/healthz" and probe["status"] == 200
