"""Administration over HTTP: timers listed and fired now; the test clock moves time and fires
what came due, and exists only when the server is started for tests."""
from __future__ import annotations

import pytest

from api_client import LiveServer
from engine.config import Settings
from procedures import deploy_library


@pytest.fixture
def api(engine):
    deploy_library(engine)
    server = LiveServer(engine, settings=Settings.defaults(test_clock=True))
    yield server
    server.stop()


def _cycle(api):
    response = api.post("/instances", "laocai.quantri", json={
        "definition_key": "annual_report", "variant": "lao-cai", "unit_id": "laocai"})
    assert response.status_code == 201, response.text
    return response.json()


def test_timers_are_listed_for_administrators_of_their_variant(api):
    cycle = _cycle(api)
    timers = api.get("/admin/timers", "laocai.quantri", params={"page_size": 200}).json()
    mine = [t for t in timers["items"] if t["instance_id"] == cycle["id"]]
    # each unit's report has its deadline (after which the unit is marked late)
    assert {t["element_id"] for t in mine} == {"unit_deadline_passed"} and len(mine) > 1
    assert all(t["variant"] == "lao-cai" and t["attempts"] == 0 for t in mine)
    theirs = api.get("/admin/timers", "cantho.quantri", params={"page_size": 200}).json()
    assert theirs["total"] == 0        # no Cần Thơ instance has a timer; Lào Cai's are hidden
    assert api.get("/admin/timers", "laocai.sxd.giamdoc").status_code == 403


def mine_of(timers: dict, instance: dict) -> list[dict]:
    return [t for t in timers["items"] if t["instance_id"] == instance["id"]]


def test_fire_a_timer_now(api, engine):
    cycle = _cycle(api)
    timers = api.get("/admin/timers", "laocai.quantri", params={"page_size": 200}).json()
    deadline = next(t for t in timers["items"] if t["instance_id"] == cycle["id"]
                    and t["element_id"] == "unit_deadline_passed")
    assert api.post(f"/admin/timers/{deadline['id']}/fire", "cantho.quantri").status_code == 404
    fired = api.post(f"/admin/timers/{deadline['id']}/fire", "laocai.quantri")
    assert fired.status_code == 200 and fired.json() == {"fired": 1}
    # one unit, and only one, is now late: its report task closed, the others' still open
    detail = api.get(f"/instances/{cycle['id']}", "laocai.quantri").json()
    assert [t["element_id"] for t in detail["open_tasks"]].count("submit_report") == \
        len(mine_of(timers, cycle)) - 1
    again = api.post(f"/admin/timers/{deadline['id']}/fire", "laocai.quantri")
    assert again.status_code == 409


def test_test_clock_moves_time_and_fires_what_came_due(api, engine):
    cycle = _cycle(api)
    before = api.post("/admin/clock", "admin", json={"advance": "PT1H"}).json()
    assert before["fired"] == 0
    moved = api.post("/admin/clock", "admin", json={"advance": "P400D"}).json()
    assert moved["fired"] >= 1
    events = api.get(f"/instances/{cycle['id']}/events", "admin",
                     params={"page_size": 200}).json()["items"]
    assert {"reminder", "escalation"} <= {e["action"] for e in events}
    assert api.post("/admin/clock", "admin", json={"set": "2020-01-01T00:00:00Z"}
                    ).status_code == 422                       # never backwards
    assert api.post("/admin/clock", "admin", json={}).status_code == 422
    assert api.post("/admin/clock", "laocai.sxd.giamdoc", json={"advance": "PT1H"}
                    ).status_code == 403


def test_without_the_flag_there_is_no_test_clock(engine):
    deploy_library(engine)
    server = LiveServer(engine, settings=Settings.defaults(test_clock=False))
    try:
        response = server.post("/admin/clock", "admin", json={"advance": "PT1H"})
        assert response.status_code == 404
        paths = server.get("/openapi.json").json()["paths"]
        assert "/api/v1/admin/clock" not in paths and "/api/v1/admin/timers" in paths
    finally:
        server.stop()
