"""The authorization matrix: each kind of user × each action, on an instance of their own
unit, of another unit and of another province."""
from __future__ import annotations

import pytest

from api_client import LiveServer
from conftest import PROJECT
from procedures import SCREENED, deploy_library, plan

ACTIONS = ("view_instance", "view_task", "claim", "complete", "suspend", "assign",
           "deploy", "users", "read_notification")
MATRIX = {
    # user: expected status per action (the notification is the head's, of the screening)
    "laocai.sxd.qlxd.truongphong": (200, 404, 404, 404, 403, 404, 403, 403, 404),  # proposer
    "laocai.sxd.giamdoc": (200, 200, 200, 200, 403, 403, 403, 403, 200),     # head, own unit
    "laocai.sxd.pgd2": (200, 200, 403, 403, 403, 403, 403, 403, 404),        # same agency
    "laocai.skhcn.giamdoc": (404, 404, 404, 404, 404, 404, 403, 403, 404),   # other agency
    "cantho.sxd.giamdoc": (404, 404, 404, 404, 404, 404, 403, 403, 404),     # other province
    "laocai.quantri": (200, 200, 403, 403, 200, 200, 403, 200, 404),         # its admin
    "cantho.quantri": (404, 404, 404, 404, 404, 404, 403, 200, 404),         # other admin
    "laocai.snv.chuyenvien": (404, 404, 404, 404, 404, 404, 200, 403, 404),  # its designer
    "admin": (200, 200, 403, 403, 200, 200, 200, 200, 404),                  # everything
}


@pytest.fixture
def api(engine):
    deploy_library(engine)
    server = LiveServer(engine)
    yield server
    server.stop()


def _screening(api) -> tuple[str, str]:
    """A fresh proposal waiting for its screening by the head of Sở Xây dựng."""
    proposer = "laocai.sxd.qlxd.truongphong"
    instance = api.post("/instances", proposer, json={"definition_key": "proposal",
                                                      "variant": "lao-cai"}).json()
    [plan_task] = api.get("/tasks", proposer, params={"instance_id": instance["id"]}).json()[
        "items"]
    assert api.post(f"/tasks/{plan_task['id']}/complete", proposer,
                    json={"data": plan()}).status_code == 200
    [screening] = api.get("/tasks", "laocai.sxd.giamdoc",
                          params={"instance_id": instance["id"]}).json()["items"]
    return instance["id"], screening["id"]


def _notification_of(api, task_id: str) -> int:
    """The head's notification of a task (everyone reads only their own)."""
    [item] = [n for n in api.app.extensions["nd73"].notifications.list_for("laocai.sxd.giamdoc")
              if n["task_id"] == task_id]
    return item["id"]


@pytest.mark.parametrize("user", list(MATRIX))
def test_authorization_matrix(api, user):
    bpmn = (PROJECT / "processes" / "national" / "council.bpmn").read_bytes()
    actions = {
        "view_instance": lambda i, t: api.get(f"/instances/{i}", user),
        "view_task": lambda i, t: api.get(f"/tasks/{t}", user),
        "claim": lambda i, t: api.post(f"/tasks/{t}/claim", user),
        "complete": lambda i, t: api.post(f"/tasks/{t}/complete", user,
                                          json={"data": {**SCREENED, "is_complex": False}}),
        "suspend": lambda i, t: api.post(f"/instances/{i}/suspend", user, json={}),
        "assign": lambda i, t: api.post(f"/tasks/{t}/assign", user,
                                        json={"username": "laocai.sxd.pgd1"}),
        "deploy": lambda i, t: api.post("/definitions/validate", user,
                                        data={"variant": "lao-cai"},
                                        files={"files": ("council.bpmn", bpmn)}),
        "users": lambda i, t: api.get("/users", user),
        "read_notification": lambda i, t: api.post("/notifications/read", user, json={
            "ids": [_notification_of(api, t)]}),
    }
    runtime = api.app.extensions["nd73"].runtime
    observed = {}
    for action in ACTIONS:
        instance_id, task_id = _screening(api)          # every action on a fresh instance
        version = runtime.get(instance_id).version
        response = actions[action](instance_id, task_id)
        observed[action] = response.status_code
        if response.status_code >= 400:
            assert response.headers["Content-Type"].startswith("application/problem+json")
            # a refused step is checked in its own transaction: it wrote nothing
            assert runtime.get(instance_id).version == version
            assert [t.id for t in runtime.open_tasks(instance_id)] == [task_id]
    assert observed == dict(zip(ACTIONS, MATRIX[user]))


def test_a_task_one_may_not_see_is_answered_like_one_that_does_not_exist(api):
    """Completing someone else's task tells nothing more than completing a made-up id."""
    _, task_id = _screening(api)
    stranger = "cantho.sxd.giamdoc"
    hidden = api.post(f"/tasks/{task_id}/complete", stranger, json={"data": {}})
    made_up = "00000000-0000-4000-8000-000000000000"
    missing = api.post(f"/tasks/{made_up}/complete", stranger, json={"data": {}})
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == {**missing.json(),
                             "detail": missing.json()["detail"].replace(made_up, task_id)}
