"""Concurrent writers and failures mid-save: one winner, a clear conflict for the loser,
and a stored state that is always a whole, earlier or later, never a mix."""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from sqlalchemy import select

from engine.access import Principal
from engine.errors import Conflict, EngineError, InvalidState, NotFound
from engine.runtime import Projection
from engine.store import AuditEvent

from conftest import ALICE, BOB, PROJECT, bpmn_source, child_environment

RACER = """
import sys
from engine.access import Principal
from engine.workflow_engine import WorkflowEngine
from engine.errors import Conflict
engine = WorkflowEngine(sys.argv[1])
sys.stdin.readline()          # wait for the starting signal
try:
    engine.runtime.complete_task(sys.argv[2], {"decision": "reject",
                                               "refusal_reasons": sys.argv[3]},
                                 principal=Principal.system(sys.argv[3]))
    print("won")
except Conflict as exc:
    print("conflict:", exc.message)
"""


def _at_decision(engine):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    [task] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(task.id, {}, principal=ALICE)
    [decide] = engine.runtime.open_tasks(instance.id)
    return instance, decide


def _assert_intact(engine, instance_id, winner):
    instance = engine.runtime.get(instance_id)
    assert instance.status == "completed"          # approve and reject both end here (refusal)
    assert instance.version == 3                   # start, plan, exactly one decision
    workflow = engine.runtime.workflow(instance_id)
    [decide] = workflow.get_tasks(spec_name="decide")
    assert decide.data["refusal_reasons"] == winner


def test_two_threads_complete_the_same_task(engine, review):
    instance, decide = _at_decision(engine)
    barrier = threading.Barrier(2)
    outcomes = {}

    def complete(who):
        barrier.wait()
        try:
            engine.runtime.complete_task(decide.id, {"decision": "reject",
                                                     "refusal_reasons": who},
                                         principal=Principal.system(who))
            outcomes[who] = "won"
        except Conflict as exc:
            outcomes[who] = exc

    threads = [threading.Thread(target=complete, args=(who,)) for who in ("reject", "deny")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [who for who, outcome in outcomes.items() if outcome == "won"]
    losers = [o for o in outcomes.values() if isinstance(o, Conflict)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    _assert_intact(engine, instance.id, winners[0])


def test_two_processes_complete_the_same_task(engine, review, database_url):
    instance, decide = _at_decision(engine)
    env = {**child_environment(), "PYTHONPATH": str(PROJECT)}
    racers = [subprocess.Popen([sys.executable, "-c", RACER, database_url, decide.id, who],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=PROJECT)
              for who in ("reject", "deny")]
    results = [r.communicate("go\n", timeout=120) for r in racers]
    outputs = [out.strip() for out, _ in results]
    assert all(r.returncode == 0 for r in racers), [err for _, err in results]
    assert sorted(o.split(":")[0] for o in outputs) == ["conflict", "won"], outputs
    winner = ("reject", "deny")[[o == "won" for o in outputs].index(True)]
    _assert_intact(engine, instance.id, winner)


def test_failure_in_the_middle_of_a_save_keeps_the_previous_state(engine, review, monkeypatch):
    instance, decide = _at_decision(engine)
    before = engine.runtime.get(instance.id)
    original = Projection.refresh

    def crash_after_state_written(self, session, *args, **kwargs):
        original(self, session, *args, **kwargs)
        session.flush()
        raise RuntimeError("power cut")

    monkeypatch.setattr(Projection, "refresh", crash_after_state_written)
    with pytest.raises(RuntimeError, match="power cut"):
        engine.runtime.complete_task(decide.id, {"decision": "approve"}, principal=BOB)
    monkeypatch.setattr(Projection, "refresh", original)

    after = engine.runtime.get(instance.id)
    assert (after.version, after.state, after.status) == (before.version, before.state,
                                                          before.status)
    [still_open] = engine.runtime.open_tasks(instance.id)
    assert still_open.id == decide.id
    engine.runtime.complete_task(decide.id, {"decision": "reject", "refusal_reasons": "x"},
                                 principal=BOB)
    assert engine.runtime.get(instance.id).status == "completed"


# --- 50 clients at once -------------------------------------------------------------------
RACERS = 50


def _safe(call):
    try:
        return call()
    except EngineError as exc:
        return exc


def _race(clients) -> list:
    """Run each client in its own thread, all released at once; their results, in order."""
    barrier = threading.Barrier(len(clients))
    results = [None] * len(clients)

    def run(index, client):
        barrier.wait()
        try:
            results[index] = client()
        except EngineError as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    return results


def _attempt(engine, task_id, data, actor):
    engine.runtime.complete_task(task_id, data, principal=Principal.system(actor))
    return "won"


def _winners(results) -> dict:
    """task id -> the one value that won it; fails when a task was won twice."""
    won = {}
    for task_id, value, outcome in results:
        if outcome == "won":
            assert task_id not in won, f"task {task_id} was completed twice"
            won[task_id] = value
        else:   # a clear refusal: someone else changed the instance or took the task first
            assert isinstance(outcome, (Conflict, InvalidState, NotFound)) and outcome.message
    return won


def _retry_the_rest(engine, instance_id, tasks: dict, won: dict, data_for) -> None:
    """What a client does after a 409: reload and complete its task if it is still open."""
    for task_id in tasks:
        if task_id not in won:
            assert task_id in {t.id for t in engine.runtime.open_tasks(instance_id)}
            engine.runtime.complete_task(task_id, data_for(task_id),
                                         principal=Principal.system("retry"))
            won[task_id] = data_for(task_id).get("vote")


@pytest.fixture
def parallel(engine):
    engine.repository.deploy("national", [bpmn_source("parallel_votes.bpmn")], "designer")
    voters = [f"voter{i}" for i in range(5)]
    instance = engine.runtime.start("national", "parallel_votes", principal=ALICE,
                                    data={"voters": voters}, business_key="PAR-1")
    return instance, voters


def _data_after(engine, instance_id, element):
    [task] = engine.runtime.workflow(instance_id).get_tasks(spec_name=element)
    return task.data


def _events(engine, instance_id, action):
    with engine.db.reading() as session:
        return list(session.scalars(select(AuditEvent.element_id).where(
            AuditEvent.instance_id == instance_id, AuditEvent.action == action)))


def _passed(engine, instance_id) -> list[str]:
    """The elements the engine passed, as the steps' audit entries list them."""
    with engine.db.reading() as session:
        details = session.scalars(select(AuditEvent.details).where(
            AuditEvent.instance_id == instance_id))
        return [element for d in details for element in (d or {}).get("passed", [])]


def test_fifty_clients_complete_the_same_task(engine, review):
    instance, decide = _at_decision(engine)
    results = _race([lambda who=f"racer{i}": engine.runtime.complete_task(
        decide.id, {"decision": "reject", "refusal_reasons": who},
        principal=Principal.system(who)) for i in range(RACERS)])
    winners = [i for i, r in enumerate(results) if not isinstance(r, EngineError)]
    assert len(winners) == 1, results
    losers = [r for r in results if isinstance(r, EngineError)]
    assert all(isinstance(r, (Conflict, InvalidState, NotFound)) and r.message for r in losers)
    _assert_intact(engine, instance.id, f"racer{winners[0]}")
    assert _events(engine, instance.id, "task_completed").count("decide") == 1


def test_fifty_clients_vote_join_and_send_the_same_message(engine, parallel):
    instance, voters = parallel
    ballots = {t.id: t for t in engine.runtime.open_tasks(instance.id)}
    assert len(ballots) == len(voters)
    # ten clients per ballot, all at once: each ballot goes to one of its clients
    def vote_of(i):
        return "for" if i % 3 else "against"
    results = _race([lambda t=list(ballots)[i % len(ballots)], i=i: (
        t, vote_of(i), _safe(lambda: _attempt(engine, t, {"vote": vote_of(i)}, f"client{i}")))
        for i in range(RACERS)])
    chosen = _winners(results)
    assert chosen, "at least the first ballot to be saved wins"
    _retry_the_rest(engine, instance.id, ballots, chosen, lambda t: {"vote": "for"})
    tally = _data_after(engine, instance.id, "tally")
    assert sorted(tally["ballots"]) == sorted(chosen.values())
    assert tally["votes_cast"] == len(voters)
    assert tally["votes_for"] == list(chosen.values()).count("for")

    # the three branches of the parallel gateway, completed at once by 50 clients
    branches = {t.id: t for t in engine.runtime.open_tasks(instance.id)}
    assert {t.element_id for t in branches.values()} == {"review_a", "review_b", "review_c"}
    results = _race([lambda t=list(branches)[i % 3], i=i: (
        t, None, _safe(lambda: _attempt(engine, t, {}, f"client{i}"))) for i in range(RACERS)])
    done = _winners(results)
    assert done
    _retry_the_rest(engine, instance.id, branches, done, lambda t: {})
    assert sorted(done) == sorted(branches)
    [joined] = engine.runtime.workflow(instance.id).get_tasks(spec_name="joined")
    assert joined.data["log"] == ["tally", "joined"]        # the join passed exactly once
    assert _passed(engine, instance.id).count("join") == 1

    # the message it now waits for, sent by 50 clients: delivered once
    results = _race([lambda i=i: engine.runtime.send_message(
        "go_ahead", {"sender": f"client{i}"}, principal=Principal.system(f"client{i}"),
        correlation_key="PAR-1")
        for i in range(RACERS)])
    delivered = [r for r in results if not isinstance(r, EngineError)]
    assert len(delivered) == 1, results
    assert all(isinstance(r, (Conflict, NotFound)) and r.message
               for r in results if isinstance(r, EngineError))
    assert _data_after(engine, instance.id, "went")["log"] == ["tally", "joined", "went"]
    [close] = engine.runtime.open_tasks(instance.id)
    assert close.element_id == "close"
    engine.runtime.complete_task(close.id, {}, principal=ALICE)
    assert engine.runtime.get(instance.id).status == "completed"


def test_fifty_http_clients_complete_the_same_task(engine):
    """The same race through the REST API: one 200, and 409 problems for everyone else."""
    from api_client import LiveServer
    from procedures import SCREENED, as_user, deploy_library, plan
    deploy_library(engine)
    proposer, head = "laocai.sxd.qlxd.truongphong", "laocai.sxd.giamdoc"
    instance = engine.runtime.start("lao-cai", "proposal", principal=as_user(engine, proposer))
    [draft] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(draft.id, plan(), principal=as_user(engine, proposer))
    [screening] = engine.runtime.open_tasks(instance.id)
    server = LiveServer(engine)
    try:
        server.token(head)
        responses = _race([lambda: server.post(f"/tasks/{screening.id}/complete", head,
                                               json={"data": {**SCREENED, "is_complex": False}})
                           for _ in range(RACERS)])
    finally:
        server.stop()
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * (RACERS - 1), statuses
    assert all(r.headers["Content-Type"].startswith("application/problem+json")
               for r in responses if r.status_code == 409)
    assert _events(engine, instance.id, "task_completed").count("screening") == 1
