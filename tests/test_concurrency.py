"""Concurrent writers and failures mid-save: one winner, a clear conflict for the loser,
and a stored state that is always a whole, earlier or later, never a mix."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from engine.errors import Conflict
from engine.runtime import Runtime

from conftest import PROJECT

RACER = """
import sys
from engine.workflow_engine import WorkflowEngine
from engine.errors import Conflict
engine = WorkflowEngine(sys.argv[1])
sys.stdin.readline()          # wait for the starting signal
try:
    engine.runtime.complete_task(sys.argv[2], {"decision": "reject",
                                               "refusal_reasons": sys.argv[3]},
                                 actor=sys.argv[3])
    print("won")
except Conflict as exc:
    print("conflict:", exc.message)
"""


def _at_decision(engine):
    instance = engine.runtime.start("national", "review", started_by="alice")
    [task] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(task.id, {}, actor="alice")
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
                                                     "refusal_reasons": who}, actor=who)
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
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
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
    original = Runtime._project

    def crash_after_state_written(self, session, *args):
        original(self, session, *args)
        session.flush()
        raise RuntimeError("power cut")

    monkeypatch.setattr(Runtime, "_project", crash_after_state_written)
    with pytest.raises(RuntimeError, match="power cut"):
        engine.runtime.complete_task(decide.id, {"decision": "approve"}, actor="bob")
    monkeypatch.setattr(Runtime, "_project", original)

    after = engine.runtime.get(instance.id)
    assert (after.version, after.state, after.status) == (before.version, before.state,
                                                          before.status)
    [still_open] = engine.runtime.open_tasks(instance.id)
    assert still_open.id == decide.id
    engine.runtime.complete_task(decide.id, {"decision": "reject", "refusal_reasons": "x"},
                                 actor="bob")
    assert engine.runtime.get(instance.id).status == "completed"
