"""Rights inside the engine: every operation that changes an instance or a task is given the
acting principal and checks, in its own unit of work once the instance is locked, that they
may; a refusal writes nothing (the instance's version and the audit log stay as they were).
The web app and the REST API call the same operations and no longer check anything first, so
a claim made between a page's look at a task and its completion is seen."""
from __future__ import annotations

import re
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select

from api.app import create_app
from engine.access import Principal
from engine.errors import Conflict, Forbidden, InvalidState, MigrationRefused, NotFound
from engine.org import DEFAULT_DEMO_PASSWORD
from engine.scheduler import SCHEDULER
from engine.store import AuditEvent, HumanTask, Instance, Timer

from api_client import LiveServer
from procedures import SCREENED, Case, as_user, deploy_library, plan, to_decision

PROPOSER = "laocai.sxd.qlxd.truongphong"
HEAD = "laocai.sxd.giamdoc"                 # screens the proposal
DEPUTY = "laocai.sxd.pgd2"                  # same agency: sees its tasks, is no candidate
ADMIN = "laocai.quantri"                    # administers lao-cai
OTHER_ADMIN = "cantho.quantri"              # administers can-tho only
OUTSIDER = "cantho.sxd.giamdoc"             # another province
CHAIRMAN, CLERK = "laocai.xa.chutich", "laocai.xa.congchuc"    # a commune's two reporters


@pytest.fixture
def library(engine):
    deploy_library(engine)
    return engine


def _who(engine, username: str) -> Principal:
    return as_user(engine, username)


def _state(engine, instance_id: str | None = None) -> tuple:
    """What a refused operation must leave as it was: the instance's version and status,
    its tasks' assignees and statuses, and the number of audit entries and instances."""
    with engine.db.reading() as session:
        entries = session.scalar(select(func.count(AuditEvent.id)))
        instances = session.scalar(select(func.count(Instance.id)))
        if instance_id is None:
            return entries, instances
        instance = session.get(Instance, instance_id)
        tasks = session.execute(select(HumanTask.id, HumanTask.status, HumanTask.assignee)
                                .where(HumanTask.instance_id == instance_id)
                                .order_by(HumanTask.id)).all()
        return entries, instances, instance.version, instance.status, tuple(tasks)


@contextmanager
def _refused(engine, error, instance_id: str | None = None, rule: str | None = None):
    """The block raises ``error`` (with ``rule``, for Forbidden) and writes nothing."""
    before = _state(engine, instance_id)
    with pytest.raises(error) as raised:
        yield raised
    if rule is not None:
        assert raised.value.rule == rule and raised.value.details["rule"] == rule
    assert _state(engine, instance_id) == before


def _screening(engine) -> tuple[Case, HumanTask]:
    """A proposal whose plan is in: its screening waits for the head of Sở Xây dựng."""
    case = Case.start(engine, "lao-cai", "proposal", PROPOSER, business_key="LC-R1")
    case.do("submit_plan", plan(), by=PROPOSER)
    [screening] = case.open("screening")
    return case, screening


def _commune_report(engine) -> tuple[Case, HumanTask]:
    """A reporting cycle (started by the scheduler) and the commune's report task, which
    both its chairman and its clerk may take."""
    cycle = Case.start(engine, "lao-cai", "annual_report", SCHEDULER,
                       data={"proposer_unit": "laocai"}, business_key="BC-R1")
    [task] = [t for t in cycle.open("submit_report") if t.unit_id == "laocai.xa"]
    assert cycle.candidates(task) == [CHAIRMAN, CLERK]
    return cycle, task


def _entries(engine, instance_id: str, action: str) -> list[AuditEvent]:
    with engine.db.reading() as session:
        return list(session.scalars(select(AuditEvent).where(
            AuditEvent.instance_id == instance_id, AuditEvent.action == action)))


# --- starting ----------------------------------------------------------------------------------

def test_start_is_for_members_of_the_variant_for_their_own_units(library):
    runtime = library.runtime
    head = _who(library, HEAD)
    with _refused(library, Forbidden, rule="members_only"):
        runtime.start("can-tho", "proposal", principal=head)
    with _refused(library, Forbidden, rule="own_units_only") as refused:
        runtime.start("lao-cai", "proposal", principal=head,
                      data={"proposer_unit": "laocai.skhcn"})
    assert "laocai.skhcn" in refused.value.message
    with _refused(library, Forbidden, rule="administrators_only"):
        runtime.start("lao-cai", "annual_report", principal=head,
                      data={"proposer_unit": "laocai"})
    started = runtime.start("lao-cai", "proposal", principal=head)
    assert (started.started_by, started.unit_id) == (HEAD, "laocai.sxd")
    [entry] = _entries(library, started.id, "instance_started")
    assert entry.actor == HEAD
    # administrators start scheduled processes by hand, for any unit of their variant
    cycle = runtime.start("lao-cai", "annual_report", principal=_who(library, ADMIN),
                          data={"proposer_unit": "laocai"})
    assert (cycle.started_by, cycle.unit_id) == (ADMIN, "laocai")
    with _refused(library, Forbidden, rule="administrators_only"):
        runtime.start("lao-cai", "annual_report", principal=_who(library, OTHER_ADMIN),
                      data={"proposer_unit": "laocai"})
    # the scheduler is trusted
    scheduled = runtime.start("lao-cai", "annual_report", principal=SCHEDULER,
                              data={"proposer_unit": "laocai"})
    assert scheduled.started_by == "scheduler"


# --- tasks -----------------------------------------------------------------------------------

def test_completing_needs_a_candidate_or_the_assignee(library):
    case, screening = _screening(library)
    complete = library.runtime.complete_task
    data = {**SCREENED, "is_complex": False}
    with _refused(library, NotFound, case.id):             # cannot even see it
        complete(screening.id, data, principal=_who(library, OUTSIDER))
    with _refused(library, Forbidden, case.id, rule="candidates_only"):   # sees, no candidate
        complete(screening.id, data, principal=_who(library, DEPUTY))
    with _refused(library, Forbidden, case.id, rule="candidates_only"):   # administrators too
        complete(screening.id, data, principal=_who(library, ADMIN))
    complete(screening.id, data, principal=_who(library, HEAD))
    with library.db.reading() as session:
        assert session.get(HumanTask, screening.id).completed_by == HEAD
    [entry] = [e for e in _entries(library, case.id, "task_completed")
               if e.element_id == "screening"]
    assert entry.actor == HEAD
    with _refused(library, Conflict, case.id):               # done is done, for anyone
        complete(screening.id, data, principal=_who(library, HEAD))


def test_a_claimed_task_is_completed_by_its_assignee_only(library):
    cycle, task = _commune_report(library)
    library.tasks.claim(task.id, _who(library, CLERK))
    with _refused(library, Forbidden, cycle.id, rule="claimed_by_another") as refused:
        library.runtime.complete_task(task.id, {"report": {"summary": "x"}},
                                      principal=_who(library, CHAIRMAN))
    assert CLERK in refused.value.message and refused.value.details["assignee"] == CLERK
    library.runtime.complete_task(task.id, {"report": {"summary": "Đã báo cáo"}},
                                  principal=_who(library, CLERK))
    assert task.id not in {t.id for t in cycle.open("submit_report")}


def test_claim_unclaim_and_assign(library):
    cycle, task = _commune_report(library)
    tasks = library.tasks
    with _refused(library, NotFound, cycle.id):
        tasks.claim(task.id, _who(library, "cantho.xa.chutich"))
    with _refused(library, Forbidden, cycle.id, rule="candidates_only"):
        tasks.claim(task.id, _who(library, ADMIN))
    assert tasks.claim(task.id, _who(library, CLERK)).assignee == CLERK
    with _refused(library, Conflict, cycle.id):              # one claim wins
        tasks.claim(task.id, _who(library, CHAIRMAN))
    with _refused(library, Forbidden, cycle.id, rule="assignee_or_administrators"):
        tasks.unclaim(task.id, _who(library, CHAIRMAN))
    assert tasks.unclaim(task.id, _who(library, CLERK)).assignee is None
    with _refused(library, Forbidden, cycle.id, rule="administrators_only"):
        tasks.assign(task.id, CHAIRMAN, _who(library, CLERK))
    with _refused(library, NotFound, cycle.id):
        tasks.assign(task.id, CHAIRMAN, _who(library, OTHER_ADMIN))
    assert tasks.assign(task.id, CHAIRMAN, _who(library, ADMIN)).assignee == CHAIRMAN
    assert tasks.unclaim(task.id, _who(library, ADMIN)).assignee is None   # an administrator
    actors = {e.action: e.actor for e in _entries(library, cycle.id, "task_claimed")
              + _entries(library, cycle.id, "task_assigned")}
    assert actors == {"task_claimed": CLERK, "task_assigned": ADMIN}


# --- administrators' repairs -------------------------------------------------------------------

def _timer_task(engine, instance_id: str) -> str:
    with engine.db.reading() as session:
        return session.scalars(select(Timer.task_id).where(
            Timer.instance_id == instance_id, Timer.status == "pending")).first()


REPAIRS = {
    "suspend": lambda rt, i, p, e: rt.suspend(i, principal=p, reason="kiểm tra"),
    "resume": lambda rt, i, p, e: rt.resume(i, principal=p),
    "terminate": lambda rt, i, p, e: rt.terminate(i, principal=p),
    "retry": lambda rt, i, p, e: rt.retry(i, principal=p),
    "migrate": lambda rt, i, p, e: rt.migrate(i, rt.get(i).definition_id, principal=p),
    "fire_timer_now": lambda rt, i, p, e: rt.fire_timer_now(i, _timer_task(e, i), principal=p),
    "fire_timers": lambda rt, i, p, e: rt.fire_timers(i, principal=p),
}


@pytest.mark.parametrize("operation", list(REPAIRS))
def test_repairs_are_for_the_administrators_of_the_variant(library, operation):
    case, _ = _screening(library)
    repair = REPAIRS[operation]
    for who, error in ((PROPOSER, Forbidden), (HEAD, Forbidden), (OUTSIDER, NotFound),
                       (OTHER_ADMIN, NotFound)):
        with _refused(library, error, case.id) as refused:
            repair(library.runtime, case.id, _who(library, who), library)
        if error is Forbidden:
            assert refused.value.rule == "administrators_only"
            assert "only administrators of 'lao-cai'" in refused.value.message


def test_administrators_repair_their_variants_instances(library):
    case, _ = _screening(library)
    runtime, admin = library.runtime, _who(library, ADMIN)
    assert runtime.suspend(case.id, principal=admin).status == "suspended"
    with _refused(library, InvalidState, case.id):        # past the rights: the state refuses
        runtime.retry(case.id, principal=admin)
    with _refused(library, MigrationRefused, case.id):
        runtime.migrate(case.id, case.instance.definition_id, principal=admin)
    assert runtime.resume(case.id, principal=admin).status == "running"
    assert runtime.fire_timer_now(case.id, _timer_task(library, case.id),
                                  principal=admin) is not None
    assert _entries(library, case.id, "timer_moved")[0].actor == ADMIN
    assert runtime.terminate(case.id, principal=_who(library, "admin")).status == "terminated"
    actors = [(e.action, e.actor) for e in _entries(library, case.id, "instance_suspended")
              + _entries(library, case.id, "instance_resumed")
              + _entries(library, case.id, "instance_terminated")]
    assert actors == [("instance_suspended", ADMIN), ("instance_resumed", ADMIN),
                      ("instance_terminated", "admin")]


# --- messages --------------------------------------------------------------------------------

def test_messages_go_to_instances_the_sender_takes_part_in(library):
    case = to_decision(library, "lao-cai", PROPOSER, business_key="LC-R2")
    case.vote({v: "for" for v in case.voters()})
    case.do("decide", {"decision": "approve"})
    send = library.runtime.send_message
    payload = {"suspension_reason": "Chờ kinh phí"}
    for stranger in (OUTSIDER, OTHER_ADMIN):
        with _refused(library, NotFound, case.id):
            send("implementation_suspended", payload, principal=_who(library, stranger),
                 instance_id=case.id)
    # taking part is not enough: suspending is the agency's decision (senderRole, Art. 6)
    with _refused(library, Forbidden, case.id, rule="message_sender"):
        send("implementation_suspended", payload, principal=_who(library, PROPOSER),
             instance_id=case.id)
    send("implementation_suspended", payload, principal=_who(library, HEAD),
         instance_id=case.id)
    assert case.open_elements() == ["suspension_review"]
    [entry] = _entries(library, case.id, "message_received")
    assert entry.actor == HEAD


# --- the race a check outside the step allowed ---------------------------------------------

def _claim_first(engine, monkeypatch, task_id: str, claimer: str) -> None:
    """Let ``claimer`` claim the task the moment the web app or the API asks the engine to
    complete it: after anything they looked at first, before the step."""
    complete = engine.runtime.complete_task

    def claimed_meanwhile(*args, **kwargs):
        engine.tasks.claim(task_id, _who(engine, claimer))
        return complete(*args, **kwargs)

    monkeypatch.setattr(engine.runtime, "complete_task", claimed_meanwhile)


def _signed_in(app, username: str):
    client = app.test_client()
    login = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    assert client.post("/login", data={"username": username,
                                       "password": DEFAULT_DEMO_PASSWORD,
                                       "csrf_token": token}).status_code == 302
    return client


def test_a_claim_between_the_task_page_and_its_completion_is_not_ignored(library, monkeypatch):
    cycle, task = _commune_report(library)
    app = create_app(library, SECRET_KEY="test-secret")
    chairman = _signed_in(app, CHAIRMAN)
    page = chairman.get(f"/tasks/{task.id}").get_data(as_text=True)
    assert 'name="report.summary"' in page             # the form, offered to the chairman
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    before = _state(library, cycle.id)
    _claim_first(library, monkeypatch, task.id, CLERK)
    refused = chairman.post(f"/tasks/{task.id}", data={
        "csrf_token": token, "report.summary": "Báo cáo của xã"})
    assert refused.status_code == 403
    text = refused.get_data(as_text=True)
    assert f"Công việc này đã được {CLERK} nhận xử lý" in text     # said in Vietnamese
    entries, instances, version, status, tasks = before
    assert _state(library, cycle.id) == (entries + 1, instances, version, status, tuple(
        (i, s, CLERK if i == task.id else a) for i, s, a in tasks))  # only the claim
    assert [e.actor for e in _entries(library, cycle.id, "task_claimed")] == [CLERK]
    assert not _entries(library, cycle.id, "task_completed")


def test_a_claim_between_an_api_clients_look_and_its_completion_is_not_ignored(
        library, monkeypatch):
    cycle, task = _commune_report(library)
    server = LiveServer(library)
    try:
        looked = server.get(f"/tasks/{task.id}", CHAIRMAN).json()
        assert looked["assignee"] is None and CHAIRMAN in looked["candidates"]
        version = library.runtime.get(cycle.id).version
        _claim_first(library, monkeypatch, task.id, CLERK)
        refused = server.post(f"/tasks/{task.id}/complete", CHAIRMAN,
                              json={"data": {"report": {"summary": "Báo cáo của xã"}}})
    finally:
        server.stop()
    assert refused.status_code == 403
    body = refused.json()
    assert body["type"].endswith("/forbidden") and body["rule"] == "claimed_by_another"
    assert CLERK in body["detail"]
    assert library.runtime.get(cycle.id).version == version
    assert not _entries(library, cycle.id, "task_completed")
    with library.db.reading() as session:
        row = session.get(HumanTask, task.id)
    assert (row.status, row.assignee) == ("open", CLERK)


def test_the_web_app_says_a_refusal_in_vietnamese_and_writes_nothing(library):
    case, _ = _screening(library)
    app = create_app(library, SECRET_KEY="test-secret")
    proposer = _signed_in(app, PROPOSER)
    page = proposer.get(f"/instances/{case.id}").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    before = _state(library, case.id)
    refused = proposer.post(f"/instances/{case.id}/suspend",
                            data={"csrf_token": token, "reason": "thử"})
    assert refused.status_code == 403 and refused.mimetype == "text/html"
    text = refused.get_data(as_text=True)
    assert "Không có quyền thực hiện" in text
    assert "Chỉ quản trị viên của lao-cai mới được thực hiện thao tác này" in text
    assert _state(library, case.id) == before
    stranger = _signed_in(app, OUTSIDER)                  # for them the case does not exist
    token = re.search(r'name="csrf-token" content="([^"]+)"',
                      stranger.get("/").get_data(as_text=True)).group(1)
    before = _state(library, case.id)                    # their sign-in is audited
    assert stranger.post(f"/instances/{case.id}/suspend",
                         data={"csrf_token": token}).status_code == 404
    assert _state(library, case.id) == before


def test_who_calls_is_read_afresh_and_through_a_unit_of_work_in_hand(library):
    # read at every request in one statement outside a transaction: a deactivated official
    # is nobody at the next request; inside a writing unit of work it reads through that
    # unit's connection (its own rows, not yet committed, included), never waiting for a
    # second connection
    from sqlalchemy import update

    from engine.store import Membership, User
    assert library.access.principal(PROPOSER).memberships
    with library.db.transaction() as session:
        session.execute(update(User).where(User.username == PROPOSER).values(active=False))
        assert library.access.principal(PROPOSER) is None
        session.add(User(username="newcomer", full_name="Người mới", password_hash="x"))
        session.flush()
        assert library.access.principal("newcomer").memberships == ()
    assert library.access.principal(PROPOSER) is None
    assert library.access.principal("newcomer").full_name == "Người mới"
    with library.db.transaction() as session:
        session.execute(update(User).where(User.username == PROPOSER).values(active=True))
        unit = session.scalar(select(Membership.unit_id)
                              .where(Membership.username == PROPOSER))
        session.add(Membership(username="newcomer", unit_id=unit, position="staff"))
    assert library.access.principal(PROPOSER).memberships
    assert (unit, "staff") in library.access.principal("newcomer").memberships
    assert library.access.principal("nobody") is None


def test_a_completion_s_statement_follows_who_calls_as_they_are_now(library):
    # the statement that reads the task and the instance's open tasks is built once per
    # caller as they are (name, units, administered variants) and reused: a membership or
    # a grant given since changes what the caller may see at their next request
    from engine.store import Grant, Membership
    case, screening = _screening(library)
    complete, access = library.runtime.complete_task, library.access
    data = {**SCREENED, "is_complex": False}
    with _refused(library, NotFound, case.id):
        complete(screening.id, data, principal=_who(library, OUTSIDER))
    with _refused(library, NotFound, case.id):
        complete(screening.id, data, principal=_who(library, OTHER_ADMIN))
    before = _who(library, OUTSIDER)
    assert access._open_rows_statement(before) is access._open_rows_statement(
        _who(library, OUTSIDER))
    with library.db.transaction() as session:
        session.add(Membership(username=OUTSIDER, unit_id=screening.unit_id, position="staff"))
        session.add(Grant(username=OTHER_ADMIN, grant="admin", variant="lao-cai"))
    after = _who(library, OUTSIDER)
    assert access._open_rows_statement(after) is not access._open_rows_statement(before)
    # they see the task now, and are still no candidate of it
    with _refused(library, Forbidden, case.id, rule="candidates_only"):
        complete(screening.id, data, principal=after)
    with _refused(library, Forbidden, case.id, rule="candidates_only"):
        complete(screening.id, data, principal=_who(library, OTHER_ADMIN))
    complete(screening.id, data, principal=_who(library, HEAD))
