"""The audit log is append-only (triggers) and tamper-evident (a hash chain per instance plus
a system chain): `nd73 audit verify` names the first broken link of an edited, deleted or
reordered entry, of a deleted tail and of a deleted chain."""
from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError

from api.cli import main as cli
from engine.audit import SYSTEM_CHAIN, triggers_lifted, verify
from engine.errors import Conflict
from engine.store import AuditEvent, Database, Instance, TaskCandidate
from engine.store.migrate import upgrade

from conftest import ALICE, BOB, CAROL
from procedures import as_user, deploy_library, to_decision
from scratch_db import scratch_database


def _run(engine, instance_count=2):
    """Instances with a few entries each: start, plan, refusal, end (review fixture)."""
    ids = []
    for n in range(instance_count):
        instance = engine.runtime.start("national", "review", principal=ALICE)
        [task] = engine.runtime.open_tasks(instance.id)
        engine.runtime.complete_task(task.id, {}, principal=ALICE)
        [decide] = engine.runtime.open_tasks(instance.id)
        engine.runtime.complete_task(decide.id, {"decision": "reject"}, principal=BOB)
        ids.append(instance.id)
    return ids


def _entries(engine, instance_id):
    with engine.db.reading() as session:
        return list(session.scalars(select(AuditEvent).where(
            AuditEvent.instance_id == instance_id).order_by(AuditEvent.id)))


def _as_attacker(engine, statement, **params):
    """What someone with the database owner's rights can do: drop the triggers, change
    rows, put the triggers back."""
    with engine.db.engine.begin() as connection, triggers_lifted(connection):
        connection.execute(text(statement), params)


def test_every_writer_chains_its_entries_and_the_log_verifies(engine, review):
    first, second = _run(engine)
    report = verify(engine.db)
    with engine.db.reading() as session:
        total = session.scalar(select(func.count(AuditEvent.id)))
        heads = {i.id: (i.audit_seq, i.audit_head) for i in session.scalars(select(Instance))}
    assert report.ok, report.broken
    assert report.events == total and total >= 5
    assert report.chains == 3                   # two instances and the system chain
    for instance_id in (first, second):
        entries = _entries(engine, instance_id)
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        assert heads[instance_id] == (len(entries), entries[-1].hash)
        assert len({e.hash for e in entries}) == len(entries)
    assert verify(engine.db, first).chains == 1


def test_claims_join_the_instance_chain(engine, review):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    [task] = engine.runtime.open_tasks(instance.id)
    with engine.db.transaction() as session:
        session.add(TaskCandidate(task_id=task.id, instance_id=instance.id, username="carol"))
    engine.tasks.claim(task.id, CAROL)
    engine.tasks.unclaim(task.id, CAROL)
    engine.runtime.complete_task(task.id, {}, principal=CAROL)
    entries = _entries(engine, instance.id)
    actions = [e.action for e in entries]
    assert actions.index("task_claimed") < actions.index("task_unclaimed") < actions.index(
        "task_completed")
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert verify(engine.db, instance.id).ok


def test_the_database_refuses_to_change_or_delete_entries_and_instances(engine, review):
    [instance_id] = _run(engine, 1)
    entry = _entries(engine, instance_id)[0]
    for statement in (update(AuditEvent).where(AuditEvent.id == entry.id).values(actor="x"),
                      delete(AuditEvent).where(AuditEvent.id == entry.id),
                      delete(Instance).where(Instance.id == instance_id)):
        with pytest.raises(DBAPIError) as refused:
            with engine.db.transaction() as session:
                session.execute(statement)
        assert "append-only" in str(refused.value) or "cannot be deleted" in str(refused.value)
    if engine.db.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.db.engine.begin() as connection:
                connection.execute(text("TRUNCATE audit_events"))
    assert verify(engine.db).ok
    assert _entries(engine, instance_id)[0].actor == entry.actor


def test_an_edited_entry_is_named_exactly(engine, review):
    _, target_instance = _run(engine)
    entries = _entries(engine, target_instance)
    victim = entries[1]
    _as_attacker(engine, "UPDATE audit_events SET actor = 'mallory' WHERE id = :id",
                 id=victim.id)
    report = verify(engine.db)
    assert not report.ok and len(report.broken) == 1
    [link] = report.broken
    assert (link.chain, link.seq, link.event_id, link.found) == (
        target_instance, victim.seq, victim.id, victim.hash)
    assert link.expected != victim.hash and len(link.expected) == 64
    # the other instance and the system chain are intact
    assert report.chains == 3


def test_a_changed_timestamp_breaks_the_link(engine, review):
    [instance_id] = _run(engine, 1)
    victim = _entries(engine, instance_id)[0]
    later = datetime(2027, 1, 1, tzinfo=timezone.utc)
    with engine.db.engine.begin() as connection, triggers_lifted(connection):
        connection.execute(update(AuditEvent).where(AuditEvent.id == victim.id)
                           .values(at=later))
    [link] = verify(engine.db).broken
    assert (link.seq, link.event_id) == (1, victim.id)


def test_a_deleted_entry_in_the_middle_breaks_the_next_one(engine, review):
    [instance_id] = _run(engine, 1)
    entries = _entries(engine, instance_id)
    assert len(entries) >= 3
    _as_attacker(engine, "DELETE FROM audit_events WHERE id = :id", id=entries[1].id)
    [link] = verify(engine.db, instance_id).broken
    assert (link.chain, link.seq, link.event_id) == (instance_id, 2, entries[2].id)
    assert "missing" in link.reason and link.found == entries[2].hash


def test_reordered_entries_are_detected(engine, review):
    [instance_id] = _run(engine, 1)
    a, b = _entries(engine, instance_id)[:2]
    _as_attacker(engine, "UPDATE audit_events SET id = -1 WHERE id = :a", a=a.id)
    _as_attacker(engine, "UPDATE audit_events SET id = :a WHERE id = :b", a=a.id, b=b.id)
    _as_attacker(engine, "UPDATE audit_events SET id = :b WHERE id = -1", b=b.id)
    [link] = verify(engine.db).broken
    assert (link.chain, link.seq, link.event_id) == (instance_id, 1, a.id)   # now holds b
    assert link.found == b.hash


def test_a_deleted_tail_and_a_deleted_chain_do_not_match_their_heads(engine, review):
    first, second = _run(engine)
    tail = _entries(engine, first)[-1]
    _as_attacker(engine, "DELETE FROM audit_events WHERE id = :id", id=tail.id)
    _as_attacker(engine, "DELETE FROM audit_events WHERE instance_id = :i", i=second)
    broken = {link.chain: link for link in verify(engine.db).broken}
    assert set(broken) == {first, second}
    assert broken[first].seq == tail.seq and broken[first].expected == tail.hash
    assert "no audit entries" in broken[second].reason


def test_the_system_chain_covers_deployments(engine, review):
    with engine.db.reading() as session:
        [deployed] = session.scalars(select(AuditEvent).where(
            AuditEvent.instance_id.is_(None))).all()
    assert deployed.action == "definition_deployed" and deployed.seq == 1
    _as_attacker(engine, "UPDATE audit_events SET actor = 'mallory' WHERE id = :id",
                 id=deployed.id)
    [link] = verify(engine.db).broken
    assert (link.chain, link.event_id) == (SYSTEM_CHAIN, deployed.id)


def test_cli_verify_reports_ok_then_the_first_broken_link(engine, review, monkeypatch):
    [instance_id] = _run(engine, 1)
    monkeypatch.setenv("ND73_DATABASE_URL", engine.db.url)
    runner = CliRunner()
    result = runner.invoke(cli, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK: 2 chain(s)")
    victim = _entries(engine, instance_id)[2]
    _as_attacker(engine, "UPDATE audit_events SET details = NULL WHERE id = :id",
                 id=victim.id)
    result = runner.invoke(cli, ["audit", "verify", "--instance", instance_id])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"BROKEN: instance {instance_id}: entry does not match its hash (changed, or its "
        f"predecessor was); seq 3; event {victim.id}; expected "
        f"{verify(engine.db).broken[0].expected} found {victim.hash}")
    result = runner.invoke(cli, ["audit", "verify", "--instance", "no-such-instance"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: instance no-such-instance does not exist"


def test_cli_verify_on_a_database_without_the_schema(tmp_path, monkeypatch):
    monkeypatch.setenv("ND73_DATABASE_URL", f"sqlite:///{tmp_path / 'blank.sqlite3'}")
    result = CliRunner().invoke(cli, ["audit", "verify"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: the database failed: no such table")
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_migration_chains_rows_written_before_it(database_url, tmp_path):
    with scratch_database(database_url, tmp_path, "premigration") as url:
        db = Database(url)
        try:
            upgrade(db, "0003")
            at = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)
            with db.engine.begin() as connection:
                connection.execute(text(
                    "INSERT INTO definitions (id, variant, key, version, content_hash, "
                    "sources, spec, deployed_at, deployed_by) VALUES (1, 'national', 'p', 1, "
                    "'h', '{}', '', :at, 'ci')"), {"at": at})
                connection.execute(text(
                    "INSERT INTO instances (id, definition_id, variant, definition_key, "
                    "status, state, state_format, version, started_by, started_at, "
                    "updated_at) VALUES ('i1', 1, 'national', 'p', 'running', '', 'x', 1, "
                    "'alice', :at, :at)"), {"at": at})
                for n, instance_id in enumerate(["i1", None, "i1", "gone", "i1"]):
                    connection.execute(text(
                        "INSERT INTO audit_events (instance_id, definition_id, at, actor, "
                        "action, details) VALUES (:i, 1, :at, 'alice', :a, :d)"),
                        {"i": instance_id, "at": at, "a": f"step{n}",
                         "d": '{"n": %d, "text": "Sở Nội vụ"}' % n})
            upgrade(db)
            report = verify(db)
            assert report.ok, report.broken
            assert (report.chains, report.events) == (3, 5)
            with db.reading() as session:
                assert session.get(Instance, "i1").audit_seq == 3
                assert [e.seq for e in session.scalars(select(AuditEvent)
                                                       .order_by(AuditEvent.id))] == [
                    1, 1, 2, 1, 3]
            with pytest.raises(DBAPIError):
                with db.transaction() as session:
                    session.execute(delete(AuditEvent))
        finally:
            db.dispose()


def test_concurrent_claims_and_completions_keep_one_unbroken_chain(engine):
    """Four voters of one instance claim and complete their parallel tasks at once: the
    chain never forks (each append sees the previous head) and nobody deadlocks."""
    deploy_library(engine, ballots=True)          # one task per member
    case = to_decision(engine, "national", "mau.sxd.qlxd.truongphong")
    voters = case.voters()
    tasks = {v: next(t for t in case.open("leadership_vote") if v in case.candidates(t))
             for v in voters}
    assert len(voters) == 4
    barrier = threading.Barrier(len(voters))
    errors, conflicts = [], []

    def vote(voter):
        barrier.wait()
        try:
            engine.tasks.claim(tasks[voter].id, as_user(engine, voter))
            for _ in range(50):              # the optimistic check makes losers retry
                try:
                    engine.runtime.complete_task(tasks[voter].id, {"vote": "for"},
                                                 principal=as_user(engine, voter))
                    return
                except Conflict as exc:
                    conflicts.append(exc.message)
            errors.append(f"{voter} never got through")
        except Exception as exc:             # noqa: BLE001 (reported below, by voter)
            errors.append(f"{voter}: {exc!r}")

    threads = [threading.Thread(target=vote, args=(v,)) for v in voters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # a loser lost the version check; none was a deadlock the database had to break
    assert not [m for m in conflicts if "busy" in m], conflicts
    entries = _entries(engine, case.id)
    assert [e.action for e in entries].count("task_claimed") == 4
    assert [e.action for e in entries].count("task_completed") == 3 + 4   # 3 before the vote
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert verify(engine.db).ok
