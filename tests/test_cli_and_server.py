"""The nd73 command line and the HTTP server, run as a user would run them."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from sqlalchemy import select

from conftest import PROJECT, child_environment
from engine.store import Instance

ND73 = Path(sys.executable).with_name("nd73")


def _run(*args, url, check=True):
    env = {**child_environment(), "ND73_DATABASE_URL": url}
    result = subprocess.run([str(ND73), *args], capture_output=True, text=True, env=env,
                            cwd=PROJECT, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def cli_url(engine):
    """The test database, emptied (the engine fixture does that), for the CLI to use."""
    return engine.db.url


def test_help_lists_the_commands(cli_url):
    out = _run("--help", url=cli_url).stdout
    for command in ("db", "deploy", "serve", "validate", "demo"):
        assert command in out


def test_upgrade_deploy_and_redeploy(cli_url):
    assert "up to date" in _run("db", "upgrade", url=cli_url).stdout
    first = _run("deploy", "--by", "ci", "processes/national", url=cli_url).stdout
    assert "national/proposal: version 1 deployed" in first
    again = _run("deploy", "processes/national", url=cli_url).stdout
    assert "national/proposal: version 1 unchanged" in again


def test_deploy_of_a_broken_folder_explains_without_a_traceback(cli_url, tmp_path):
    (tmp_path / "variant.toml").write_text('name = "broken"\n')
    (tmp_path / "bad.bpmn").write_text("<bpmn:definitions>\n<oops>\n")
    result = _run("deploy", str(tmp_path), url=cli_url, check=False)
    assert result.returncode == 1
    assert "bad.bpmn:1: not well-formed XML" in result.stderr
    assert "Traceback" not in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_healthz_over_http(cli_url):
    port = _free_port()
    env = {**child_environment(), "ND73_DATABASE_URL": cli_url, "ND73_PORT": str(port)}
    server = subprocess.Popen([str(ND73), "serve"], env=env, cwd=PROJECT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        booted = ready = None
        for line in server.stdout:      # gunicorn boots the worker, which loads the app
            if "Booting worker" in line:
                booted = int(re.search(r"pid: (\d+)", line).group(1))
            if '"message": "worker ' in line:
                ready = int(re.search(r'"message": "worker (\d+) ready"', line).group(1))
                break
        else:
            raise AssertionError("the server stopped before its worker was ready")
        assert booted is not None and ready == booted != server.pid
        for _ in range(100):                        # the worker imports the app, then serves
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz",
                                            timeout=5) as r:
                    assert r.status == 200 and json.load(r) == {"status": "ok"}
                    break
            except urllib.error.URLError:
                assert server.poll() is None
        else:
            raise AssertionError("/healthz never answered")
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/no-such-thing", timeout=2)
        assert missing.value.code == 404
        assert json.load(missing.value)["type"].endswith("/not-found")
        with pytest.raises(urllib.error.HTTPError) as page:     # people get a page
            urllib.request.urlopen(f"http://127.0.0.1:{port}/no-such-page", timeout=2)
        assert page.value.code == 404
        assert page.value.headers["Content-Type"].startswith("text/html")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_scheduler_command_fires_due_timers(engine, cli_url):
    from conftest import ALICE, bpmn_source
    engine.repository.deploy("national", [bpmn_source("timers.bpmn")], "designer")
    instance = engine.runtime.start("national", "wait_then_go", principal=ALICE,
                                    data={"wait": "PT1H"})          # due long ago, really
    assert "fired 1 timer(s)" in _run("scheduler", "--once", url=cli_url).stdout
    assert engine.runtime.get(instance.id).status == "completed"
    assert "fired 0 timer(s)" in _run("scheduler", "--once", url=cli_url).stdout


def test_the_demo_starts_the_cases_demo_toml_describes(engine):
    from engine.demo import seed
    from procedures import deploy_library
    deploy_library(engine)
    lines = seed(engine, PROJECT / "processes")
    assert "proposal LC-2026-001 waits for screening by the head" in lines
    with engine.db.reading() as session:
        started = {i.business_key: i for i in session.scalars(select(Instance))}
    assert set(started) == {"LC-2026-001", "DL-2026-001"}
    assert [t.element_id for t in engine.runtime.open_tasks(started["LC-2026-001"].id)] == [
        "screening"]
    assert [t.element_id for t in engine.runtime.open_tasks(started["DL-2026-001"].id)] == [
        "submit_plan"]
    assert seed(engine, PROJECT / "processes")[-1] == "demo cases already present"


def test_a_long_running_process_keeps_what_it_started_with_out_of_full_collections():
    """What a server's worker or the scheduler made at its start is frozen out of the
    garbage collector's passes; garbage made before is collected, not kept."""
    import gc
    import weakref

    from api.cli import _keep_what_started

    class Node:
        pass

    kept = Node()
    cycle = Node()
    cycle.self = cycle            # garbage only the collector frees
    gone = weakref.ref(cycle)
    del cycle
    frozen_before = gc.get_freeze_count()
    try:
        _keep_what_started()
        assert gone() is None
        assert gc.get_freeze_count() > frozen_before
        assert not any(o is kept for o in gc.get_objects())     # not walked any more
    finally:
        gc.unfreeze()
    assert any(o is kept for o in gc.get_objects())
