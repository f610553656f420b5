"""The organisation administered in the product: units, officials and positions through the
API (administrators of the variant only, every change in the organisation's log), the HR
spreadsheet imported with a preview and all or nothing, people who leave or move and the
open tasks that follow their position, and the cached tree of another process seeing a
change at once."""
from __future__ import annotations

import csv
import io

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from api_client import LiveServer
from engine.store import HumanTask, Membership, User
from engine.workflow_engine import WorkflowEngine
from procedures import SCREENED, Case, as_user, deploy_library, plan

ADMIN = "laocai.quantri"
HEAD = "laocai.sxd.giamdoc"            # head of the Department of Construction
PROPOSER = "laocai.sxd.qlxd.truongphong"
OFFICIAL = "laocai.sxd.qlxd.chuyenvien"
HEADER = ["username", "full_name", "email", "phone", "unit_id", "position", "valid_from",
          "valid_to", "active"]


@pytest.fixture
def api(engine):
    deploy_library(engine)
    server = LiveServer(engine)
    yield server
    server.stop()


def is_problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    return response.json()


def screening(engine) -> tuple[Case, HumanTask]:
    """A proposal of a division of the department, submitted: the decider (the department's
    head) has it to screen."""
    case = Case.start(engine, "lao-cai", "proposal", PROPOSER)
    case.do("submit_plan", plan(), by=PROPOSER)
    [task] = case.open("screening")
    assert case.candidates(task) == [HEAD] and task.unit_id == "laocai.sxd"
    return case, task


def xlsx(rows: list[list]) -> bytes:
    book = Workbook()
    sheet = book.active
    for row in [HEADER, *rows]:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def upload(api, content: bytes, name: str = "officials.xlsx", apply: bool = False,
           user: str = ADMIN):
    return api.post("/org/lao-cai/import", user, files={"file": (name, content)},
                    data={"apply": "1" if apply else "0"})


def test_units_and_officials_are_administered_by_the_variants_administrators(api, engine):
    made = api.call("PUT", "/org/lao-cai/units/laocai.bql", ADMIN, json={
        "name": "Ban Quản lý dự án", "kind": "public_service_unit", "parent_id": "laocai"})
    assert made.status_code == 200, made.text
    division = api.call("PUT", "/org/lao-cai/units/laocai.bql.kt", ADMIN, json={
        "name": "Phòng Kỹ thuật", "kind": "division", "parent_id": "laocai.bql"})
    assert division.json()["parent_id"] == "laocai.bql"
    # no unit below itself; an unknown kind, a unit of another variant
    is_problem(api.call("PUT", "/org/lao-cai/units/laocai.bql", ADMIN, json={
        "name": "x", "kind": "public_service_unit", "parent_id": "laocai.bql.kt"}), 422)
    is_problem(api.call("PUT", "/org/lao-cai/units/x1", ADMIN, json={
        "name": "x", "kind": "ministry"}), 422)
    is_problem(api.call("PUT", "/org/lao-cai/units/x1", ADMIN, json={
        "name": "x", "kind": "division", "parent_id": "cantho"}), 404)

    official = api.call("PUT", "/org/lao-cai/officials/laocai.bql.kt.tp", ADMIN, json={
        "full_name": "Lò Văn Tâm", "email": "tam@laocai.gov.vn", "phone": "0214 3840 000"})
    assert official.status_code == 200, official.text
    assert official.json()["active"] is True and official.json()["memberships"] == []
    bad = is_problem(api.call("PUT", "/org/lao-cai/officials/laocai.x", ADMIN, json={
        "full_name": "X", "email": "not-an-address"}), 422)
    assert bad["code"] == "org.bad_email"
    for position in ("head", "party_secretary"):
        added = api.post("/org/lao-cai/officials/laocai.bql.kt.tp/memberships", ADMIN,
                         json={"unit_id": "laocai.bql.kt", "position": position,
                               "valid_from": "2025-01-01"})
        assert added.status_code == 200, added.text
    listed = api.get("/org/lao-cai/officials", ADMIN, params={"page_size": 200}).json()
    [row] = [o for o in listed["items"] if o["username"] == "laocai.bql.kt.tp"]
    assert row["phone"] == "0214 3840 000"
    assert {(m["unit_id"], m["position"], m["valid_from"]) for m in row["memberships"]} == {
        ("laocai.bql.kt", "head", "2025-01-01"),
        ("laocai.bql.kt", "party_secretary", "2025-01-01")}
    assert engine.org.members("laocai.bql.kt", ["head"]) == ["laocai.bql.kt.tp"]

    # only administrators of the variant: another province's, an official, nobody
    for user in ("cantho.quantri", HEAD):
        is_problem(api.get("/org/lao-cai/officials", user), 403)
        is_problem(api.call("PUT", "/org/lao-cai/units/laocai.y", user, json={
            "name": "y", "kind": "division", "parent_id": "laocai"}), 403)
    assert api.get("/org/lao-cai/officials").status_code == 401

    log = api.get("/org/lao-cai/log", ADMIN, params={"page_size": 200}).json()["items"]
    actions = [(e["action"], e["actor"]) for e in log]
    assert ("org_unit_created", ADMIN) in actions
    assert ("org_official_created", ADMIN) in actions
    assert actions.count(("org_membership_added", ADMIN)) == 2
    assert api.get("/org/lao-cai/log", "cantho.quantri").status_code == 403


def test_a_new_head_takes_the_open_tasks_that_follow_the_position(api, engine):
    case, task = screening(engine)
    engine.tasks.claim(task.id, as_user(engine, HEAD))
    api.call("PUT", "/org/lao-cai/officials/laocai.sxd.gd2", ADMIN, json={
        "full_name": "Hoàng Thị Mai", "password": "mat-khau-moi-1"})
    appointed = api.post("/org/lao-cai/officials/laocai.sxd.gd2/memberships", ADMIN,
                         json={"unit_id": "laocai.sxd", "position": "head"})
    assert appointed.status_code == 200, appointed.text
    assert appointed.json()["reassigned"] == [{
        "task_id": task.id, "instance_id": case.id, "name": task.name, "from": HEAD,
        "to": "laocai.sxd.gd2", "claimed": True}]
    # the old head is no longer head, nor a candidate; the claim passed with the position
    assert engine.org.members("laocai.sxd", ["head"]) == ["laocai.sxd.gd2"]
    [moved] = case.open("screening")
    assert moved.assignee == "laocai.sxd.gd2" and case.candidates(moved) == ["laocai.sxd.gd2"]
    assert case.audit("task_reassigned")[0].details["from"] == HEAD
    is_problem(api.post(f"/tasks/{task.id}/complete", HEAD,
                        json={"data": {**SCREENED, "is_complex": False}}), 403)
    api.token("laocai.sxd.gd2", "mat-khau-moi-1")      # the password the administrator set
    done = api.post(f"/tasks/{task.id}/complete", "laocai.sxd.gd2",
                    json={"data": {**SCREENED, "is_complex": False}})
    assert done.status_code == 200, done.text
    assert not case.open("screening")
    log = [e["action"] for e in api.get("/org/lao-cai/log", ADMIN).json()["items"]]
    assert "org_membership_ended" in log


def test_deactivating_shows_open_work_and_hands_it_over_at_once(api, engine):
    case, task = screening(engine)
    work = api.get(f"/org/lao-cai/officials/{HEAD}/open-work", ADMIN).json()
    assert [(w["task_id"], w["claimed"], w["successor"]) for w in work] == [
        (task.id, False, None)]               # the only head: nobody takes it by default
    is_problem(api.post(f"/org/lao-cai/officials/{HEAD}/active", ADMIN, json={
        "active": False, "reassign": {task.id: "nobody.here"}}), 422)
    assert engine.access.principal(HEAD) is not None        # nothing was written
    gone = api.post(f"/org/lao-cai/officials/{HEAD}/active", ADMIN, json={
        "active": False, "reassign": {task.id: "laocai.sxd.pgd1"}})
    assert gone.status_code == 200, gone.text
    assert [(r["from"], r["to"]) for r in gone.json()["reassigned"]] == [
        (HEAD, "laocai.sxd.pgd1")]
    assert case.candidates(case.open("screening")[0]) == ["laocai.sxd.pgd1"]
    assert engine.org.members("laocai.sxd", ["head"]) == []
    assert engine.access.principal(HEAD) is None
    assert api.post("/auth/token", json={"username": HEAD, "password": "nd73-demo"}
                    ).status_code == 401
    listed = api.get("/org/lao-cai/officials", ADMIN, params={"page_size": 200}).json()
    assert [o["active"] for o in listed["items"] if o["username"] == HEAD] == [False]


def test_moving_an_official_passes_their_tasks_to_who_holds_the_position_there(api, engine):
    case, task = screening(engine)
    # a second head (say an acting one named head too) would take it by default
    api.post(f"/org/lao-cai/officials/{HEAD}/memberships", ADMIN,
             json={"unit_id": "laocai.sxd", "position": "party_secretary"})
    moved = api.post(f"/org/lao-cai/officials/{HEAD}/move", ADMIN, json={
        "from_unit": "laocai.sxd", "to_unit": "laocai.skhcn", "position": "deputy",
        "reassign": {task.id: "laocai.sxd.pgd2"}})
    assert moved.status_code == 200, moved.text
    assert engine.org.units_of(HEAD) == ["laocai.skhcn"]
    assert engine.org.positions(HEAD) == ["deputy"]
    assert case.candidates(case.open("screening")[0]) == ["laocai.sxd.pgd2"]
    is_problem(api.post(f"/org/lao-cai/officials/{HEAD}/move", ADMIN, json={
        "from_unit": "laocai.sxd", "to_unit": "laocai.skhcn", "position": "deputy"}), 404)


def test_without_another_head_the_acting_head_takes_the_heads_work(api, engine):
    case, task = screening(engine)
    api.post("/org/lao-cai/officials/laocai.sxd.pgd3/memberships", ADMIN,
             json={"unit_id": "laocai.sxd", "position": "acting_head"})
    work = api.get(f"/org/lao-cai/officials/{HEAD}/open-work", ADMIN).json()
    assert [w["successor"] for w in work] == ["laocai.sxd.pgd3"]
    ended = api.post(f"/org/lao-cai/officials/{HEAD}/memberships/end", ADMIN,
                     json={"unit_id": "laocai.sxd", "position": "head"})
    assert [(r["from"], r["to"]) for r in ended.json()["reassigned"]] == [
        (HEAD, "laocai.sxd.pgd3")]
    assert case.candidates(case.open("screening")[0]) == ["laocai.sxd.pgd3"]


def test_bulk_reassignment_of_a_variants_tasks(api, engine):
    tasks = [screening(engine)[1] for _ in range(3)]
    ids = [t.id for t in tasks]
    is_problem(api.post("/org/lao-cai/tasks/reassign", HEAD,
                        json={"task_ids": ids, "username": "laocai.sxd.pgd1"}), 403)
    is_problem(api.post("/org/can-tho/tasks/reassign", "cantho.quantri",
                        json={"task_ids": ids, "username": "cantho.sxd.giamdoc"}), 404)
    done = api.post("/org/lao-cai/tasks/reassign", ADMIN,
                    json={"task_ids": ids, "username": "laocai.sxd.pgd1"})
    assert done.status_code == 200, done.text
    for task_id in ids:
        assert engine.tasks.get(task_id).assignee == "laocai.sxd.pgd1"
    inbox = api.get("/tasks", "laocai.sxd.pgd1", params={"scope": "mine"}).json()
    assert {t["id"] for t in inbox["items"]} >= set(ids)


def _count(engine, model) -> int:
    with engine.db.reading() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_import_previews_names_row_errors_and_is_all_or_nothing(api, engine):
    users, memberships = _count(engine, User), _count(engine, Membership)
    broken = xlsx([
        ["laocai.sxd.tp1", "Đặng Văn Bình", "binh@laocai.gov.vn", "", "laocai.sxd.qlxd",
         "staff", "01/02/2025", "", 1],
        ["laocai.x2", "Vũ Thị Hoa", "hoa@laocai.gov.vn", "", "laocai.khong.co", "staff",
         "", "", 1],
        ["laocai.sxd.tp1", "Đặng Văn Bính", "khac@laocai.gov.vn", "", "laocai.sxd.gt",
         "staff", "", "", 1],
        ["laocai.x3", "Trần Văn Cường", "cuong(at)laocai", "", "laocai.sxd", "deputy", "",
         "", 1],
    ])
    preview = upload(api, broken)
    assert preview.status_code == 200, preview.text
    errors = [(e["row"], e["column"], e["code"]) for e in preview.json()["errors"]]
    assert errors == [(3, "unit_id", "org.unknown_unit"),
                      (4, "username", "org.duplicate_username"),
                      (5, "email", "org.bad_email")]
    refused = is_problem(upload(api, broken, apply=True), 422)
    assert [(e["row"], e["column"]) for e in refused["errors"]] == [
        (3, "unit_id"), (4, "username"), (5, "email")]
    assert refused["errors"][0]["message"]           # said in the reader's language
    assert (_count(engine, User), _count(engine, Membership)) == (users, memberships)

    good = xlsx([
        ["laocai.sxd.tp1", "Đặng Văn Bình", "binh@laocai.gov.vn", "0912345678",
         "laocai.sxd.qlxd", "staff", "01/02/2025", "", 1],
        ["laocai.sxd.tp1", "Đặng Văn Bình", "binh@laocai.gov.vn", "0912345678",
         "laocai.sxd.qlxd", "deputy", "", "", 1],
        [OFFICIAL, "Chuyên viên QLXD", "", "", "laocai.sxd.gt", "staff", "", "", 1],
    ])
    preview = upload(api, good).json()
    assert preview["errors"] == [] and preview["added"] == ["laocai.sxd.tp1"]
    assert preview["memberships_ended"] == [{"username": OFFICIAL,
                                             "unit_id": "laocai.sxd.qlxd",
                                             "position": "staff"}]
    assert _count(engine, User) == users                      # a preview writes nothing
    applied = upload(api, good, apply=True)
    assert applied.status_code == 200 and applied.json()["applied"] is True
    assert engine.org.positions("laocai.sxd.tp1", "laocai.sxd.qlxd") == ["deputy", "staff"]
    assert engine.org.units_of(OFFICIAL) == ["laocai.sxd.gt"]

    exported = api.get("/org/lao-cai/export", ADMIN)
    sheet = load_workbook(io.BytesIO(exported.content)).active
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0] == HEADER
    assert ["laocai.sxd.tp1", "Đặng Văn Bình", "binh@laocai.gov.vn", "0912345678",
            "laocai.sxd.qlxd", "staff", "01/02/2025", None, "1"] in rows
    # the export imports again unchanged; CSV the same
    again = upload(api, exported.content).json()
    assert (again["errors"], again["added"], again["memberships_added"],
            again["memberships_ended"]) == ([], [], [], [])
    text = api.get("/org/lao-cai/export", ADMIN, params={"format": "csv"}).content
    assert list(csv.reader(io.StringIO(text.decode("utf-8-sig"))))[0] == HEADER
    same = upload(api, text, name="officials.csv").json()
    assert (same["errors"], same["added"], same["memberships_ended"]) == ([], [], [])
    is_problem(upload(api, b"PK\x03\x04 not a workbook"), 422)
    is_problem(upload(api, good, user="cantho.quantri"), 403)


def test_a_head_change_is_seen_at_once_by_another_engine(engine, database_url, clock):
    deploy_library(engine)
    other = WorkflowEngine(database_url, clock=clock)
    try:
        # the other process has read the tree (its cache is warm)
        assert other.org.members("laocai.sxd", ["head"]) == [HEAD]
        engine.orgadmin.save_official(as_user(engine, ADMIN), "lao-cai", "laocai.sxd.gd2",
                                      full_name="Hoàng Thị Mai")
        engine.orgadmin.add_membership(as_user(engine, ADMIN), "lao-cai", "laocai.sxd.gd2",
                                       "laocai.sxd", "head")
        # no waiting: the next look-up of the other engine sees the new head
        assert other.org.members("laocai.sxd", ["head"]) == ["laocai.sxd.gd2"]
        case = Case.start(other, "lao-cai", "proposal", PROPOSER)
        case.do("submit_plan", plan(), by=PROPOSER)
        assert case.candidates(case.open("screening")[0]) == ["laocai.sxd.gd2"]
    finally:
        other.close()


def test_reading_the_tree_again_after_a_change_is_not_charged_to_a_script(engine):
    """After the organisation changed, the first look-up reads the tree again inside
    ``uncharged()`` (a country's tree took a reporting cycle's opening script past its CPU
    limit); a look-up on the tree as kept reads nothing and is charged as it runs."""
    from engine.sandbox import uncharged_seconds
    deploy_library(engine)
    engine.org.invalidate()
    before = uncharged_seconds()
    assert engine.org.unit("laocai").id == "laocai"
    refilled = uncharged_seconds()
    assert refilled > before
    assert engine.org.unit("laocai").kind == engine.org.unit("laocai").kind
    assert uncharged_seconds() == refilled
