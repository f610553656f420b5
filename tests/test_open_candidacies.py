"""Candidacies say whether their task is open (migration 0010): a trigger keeps the flag
equal to the task's status, the migration sets it for candidacies already there, and an
inbox reads only open candidacies, so it lists exactly the open tasks one may work on."""
from __future__ import annotations

from sqlalchemy import inspect, select, text, update

from engine.store import Database, HumanTask, TaskCandidate
from engine.store.migrate import downgrade, upgrade
from engine.workflow_engine import WorkflowEngine

from conftest import ALICE
from procedures import SCREENED, Case, as_user, deploy_library, plan
from scratch_db import proposal_at_vote, scratch_database

VOTER = "mau.sxd.pgd1"


def _flags(db: Database) -> list[tuple]:
    """(task, candidate, flag, the task's status) of every candidacy."""
    with db.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(
            "SELECT c.task_id, c.username, c.task_open, t.status FROM task_candidates c "
            "JOIN human_tasks t ON t.id = c.task_id ORDER BY c.task_id, c.username"))]


def _consistent(rows) -> bool:
    return all(bool(flag) == (status == "open") for _, _, flag, status in rows)


def test_migration_sets_the_flag_and_the_downgrade_takes_it_away(database_url, tmp_path,
                                                                  clock):
    with scratch_database(database_url, tmp_path, "open_candidacies") as url:
        case = proposal_at_vote(url, clock)
        db = Database(url)
        try:
            before = _flags(db)
            # the plan, the screening and the party's opinion are done; the vote is open
            assert {bool(flag) for *_rest, flag, _status in before} == {True, False}
            assert _consistent(before)
            downgrade(db, "0009")
            columns = {c["name"] for c in inspect(db.engine).get_columns("task_candidates")}
            indexes = {i["name"] for i in inspect(db.engine).get_indexes("task_candidates")}
            assert "task_open" not in columns
            assert "ix_candidate_user" in indexes and "ix_candidate_open" not in indexes
            upgrade(db)
            assert _flags(db) == before
        finally:
            db.dispose()

        engine = WorkflowEngine(url, clock=clock)
        try:
            voter = engine.access.principal(VOTER)
            inbox = engine.tasks.inbox(voter)
            assert [t.element_id for t in inbox.items] == ["leadership_vote"]
            assert {t.instance_id for t in inbox.items} == {case.id}
        finally:
            engine.close()


def test_the_flag_follows_every_change_of_the_task_status(engine, review):
    """Completed, cancelled, reopened (as a retry or a migration does): whoever writes the
    status, the candidacies follow, in the same statement."""
    instance = engine.runtime.start("national", "review", principal=ALICE)
    [task] = engine.runtime.open_tasks(instance.id)

    def flags():
        with engine.db.reading() as session:
            return set(session.execute(select(TaskCandidate.task_open)
                                       .where(TaskCandidate.task_id == task.id)).scalars())

    assert flags() == {True}
    for status, expected in (("cancelled", {False}), ("open", {True}),
                             ("completed", {False}), ("open", {True})):
        with engine.db.transaction() as session:
            session.execute(update(HumanTask).where(HumanTask.id == task.id)
                            .values(status=status))
        assert flags() == expected, status


def test_an_inbox_lists_open_tasks_one_may_work_on_and_nothing_else(engine):
    """Tasks offered to the user and unclaimed, or assigned to them; not tasks given to
    someone else, nor closed ones, whatever their candidacies."""
    deploy_library(engine)
    proposer, head = "mau.sxd.qlxd.truongphong", "mau.sxd.giamdoc"
    tasks = []
    for _ in range(3):
        case = Case.start(engine, "national", "proposal", proposer)
        case.do("submit_plan", plan(), by=proposer)
        tasks += case.open("screening")

    def inbox(scope=None):
        return {t.id for t in engine.tasks.inbox(engine.access.principal(head),
                                                 scope=scope).items}

    ids = [t.id for t in tasks]
    assert inbox() == inbox("candidate") == set(ids)
    engine.tasks.claim(ids[0], as_user(engine, head))
    engine.runtime.complete_task(ids[1], {**SCREENED, "is_complex": False},
                                 principal=as_user(engine, head))
    assert inbox() == {ids[0], ids[2]}
    assert inbox("mine") == {ids[0]}
    assert inbox("candidate") == {ids[2]}
    engine.tasks.assign(ids[2], "mau.sxd.pgd1", as_user(engine, "admin"))   # head: a candidacy
    assert inbox() == inbox("mine") == {ids[0]}
    assert inbox("candidate") == set()
