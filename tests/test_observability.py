"""Health, readiness, metrics, request ids and the configuration check."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from api_client import LiveServer
from engine.workflow_engine import WorkflowEngine

from conftest import ALICE, PROJECT, bpmn_source, child_environment
from procedures import deploy_library

ND73 = Path(sys.executable).with_name("nd73")


def test_ready_only_with_a_current_schema(engine, tmp_path):
    server = LiveServer(engine)
    try:
        assert requests.get(server.url + "/readyz", timeout=10).json() == {"status": "ready"}
    finally:
        server.stop()
    blank = WorkflowEngine(f"sqlite:///{tmp_path / 'blank.sqlite3'}")
    server = LiveServer(blank)
    try:
        response = requests.get(server.url + "/readyz", timeout=10)
        assert response.status_code == 503 and "nd73 db upgrade" in response.json()["detail"]
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        server.stop()
        blank.close()


def test_metrics_and_request_ids(engine, clock):
    deploy_library(engine)
    engine.repository.deploy("national", [bpmn_source()], "designer")
    engine.runtime.start("national", "review", principal=ALICE)
    server = LiveServer(engine)
    try:
        echoed = requests.get(server.url + "/healthz", headers={"X-Request-ID": "abc-123"},
                              timeout=10)
        assert echoed.headers["X-Request-ID"] == "abc-123"
        made_up = requests.get(server.url + "/healthz", timeout=10).headers["X-Request-ID"]
        assert len(made_up) == 32
        clock.advance(days=30)                 # the review's plan has no due date; none late
        text = requests.get(server.url + "/metrics", timeout=10).text
        assert 'nd73_instances{status="running"} 1.0' in text
        assert "nd73_tasks_open 1.0" in text and "nd73_tasks_overdue 0.0" in text
        assert ('nd73_http_requests_total{endpoint="/healthz",method="GET",status="200"} 2.0'
                in text)
        assert "nd73_timer_lag_seconds 0.0" in text and "nd73_incidents 0.0" in text
    finally:
        server.stop()


def test_check_config_explains_problems(engine):
    env = {**child_environment(), "ND73_DATABASE_URL": engine.db.url}
    good = subprocess.run([str(ND73), "check-config"], env=env, cwd=PROJECT,
                          capture_output=True, text=True, timeout=60)
    assert good.returncode == 0 and "configuration is valid" in good.stdout
    bad = subprocess.run([str(ND73), "check-config"], cwd=PROJECT, capture_output=True,
                         text=True, timeout=60,
                         env={**env, "ND73_PORT": "eighty", "ND73_SECRET_KEY": "short",
                              "ND73_DATABASE_URL": "not a url"})
    assert bad.returncode == 1
    for expected in ("ND73_PORT: 'eighty' is not a whole number",
                     "ND73_SECRET_KEY: use at least 32", "ND73_DATABASE_URL: 'not a url'"):
        assert expected in bad.stderr
    test_clock = subprocess.run([str(ND73), "check-config"], cwd=PROJECT, capture_output=True,
                                text=True, timeout=60, env={**env, "ND73_TEST_CLOCK": "1"})
    assert test_clock.returncode == 1 and "ND73_TEST_CLOCK=1" in test_clock.stderr
