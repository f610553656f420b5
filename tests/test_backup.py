"""nd73 export / nd73 import: a backup of real procedures at several stages goes from the
suite's database to a fresh SQLite file and back to a fresh database of the suite's kind
(SQLite or PostgreSQL) without losing anything, and running work continues there. Bad
documents and non-empty targets are refused by name, with nothing written."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from api.cli import main as cli
from engine.audit import verify
from engine.backup import BackupError, backed_up_tables, export_file, import_file
from engine.scheduler import SCHEDULER
from engine.store import Database, TaskCandidate, Timer
from engine.workflow_engine import WorkflowEngine

from conftest import ALICE
from procedures import Case, as_user, deploy_library, to_decision
from scratch_db import scratch_database


def _stages(engine, clock):
    """A finished proposal, one waiting for its vote, one implementing (waiting for
    messages), a suspended one and an open reporting cycle with reminder timers."""
    clock.set(datetime(2026, 11, 16, 1, 0, tzinfo=timezone.utc))
    deploy_library(engine, ballots=True)          # a vote open: one task per member
    finished = to_decision(engine, "national", "mau.sxd.qlxd.truongphong", business_key="DX-1")
    finished.vote({v: "against" for v in finished.voters()})
    finished.do("decide", {"decision": "reject", "refusal_reasons": "Đã có quy định"})
    voting = to_decision(engine, "lao-cai", "laocai.sxd.qlxd.truongphong", business_key="DX-2")
    implementing = to_decision(engine, "national", "mau.sxd.qlxd.truongphong",
                               business_key="DX-3")
    implementing.vote({v: "for" for v in implementing.voters()})
    implementing.do("decide", {"decision": "approve"})
    suspended = to_decision(engine, "dak-lak", "daklak.sxd.qlxd.truongphong",
                            business_key="DX-4")
    engine.runtime.suspend(suspended.id, principal=as_user(engine, "admin"),
                           reason="Chờ hồ sơ")
    cycle = Case.start(engine, "national", "annual_report", SCHEDULER,
                       data={"proposer_unit": "mau"})
    [task] = voting.open("leadership_vote")[:1]
    engine.tasks.claim(task.id, as_user(engine, voting.candidates(task)[0]))
    clock.advance(hours=3)
    return {"finished": finished, "voting": voting, "implementing": implementing,
            "suspended": suspended, "cycle": cycle}


def _document(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _counts(db):
    with db.reading() as session:
        return {t.name: session.scalar(select(func.count()).select_from(t))
                for t in backed_up_tables()}


def test_round_trip_between_databases_loses_nothing(engine, clock, database_url, tmp_path):
    cases = _stages(engine, clock)
    statuses = {name: case.instance.status for name, case in cases.items()}
    assert statuses == {"finished": "completed", "voting": "running",
                        "implementing": "running", "suspended": "suspended",
                        "cycle": "running"}
    with engine.db.reading() as session:
        pending = session.scalars(select(Timer).where(Timer.status == "pending",
                                                      Timer.instance_id == cases["cycle"].id))
        assert list(pending), "the reporting cycle has open reminder timers"
    # a designer's draft (its document templates are binary) travels with the backup too
    engine.drafts.open("lao-cai", as_user(engine, "laocai.snv.chuyenvien"))
    source_counts = _counts(engine.db)
    first = tmp_path / "first.json"
    export_file(engine.db, first)

    copy = Database(f"sqlite:///{tmp_path / 'copy.sqlite3'}")
    copy.upgrade()
    import_file(copy, first)
    assert _counts(copy) == source_counts
    assert verify(copy).ok
    second = tmp_path / "second.json"
    export_file(copy, second)
    copy.dispose()
    one, two = _document(first), _document(second)
    assert one["schema"] == two["schema"] and one["format"] == "nd73-backup"
    assert one["tables"] == two["tables"]
    for table in ("definitions", "instances", "instance_state_deltas", "human_tasks",
                  "task_candidates", "timers",
                  "message_subscriptions", "decisions", "audit_events", "org_units", "users",
                  "memberships", "grants", "drafts", "draft_files"):
        assert one["tables"][table]["rows"], f"{table} is empty: the test proves nothing"
    assert "login_attempts" not in one["tables"]
    started = one["tables"]["instances"]["columns"].index("started_at")
    assert one["tables"]["instances"]["rows"][0][started].endswith("+00:00")

    with scratch_database(database_url, tmp_path, "restore") as url:
        restored = WorkflowEngine(url, clock=clock)
        try:
            restored.upgrade_database()
            import_file(restored.db, second)
            assert _counts(restored.db) == source_counts
            report = verify(restored.db)
            assert report.ok and report.events == source_counts["audit_events"]
            voting = Case(restored, restored.runtime.get(cases["voting"].id))
            voting.vote({v: "for" for v in voting.voters()})
            assert voting.open_elements() == ["decide"]
            restored.runtime.resume(cases["suspended"].id,
                                    principal=as_user(restored, "admin"))
            assert restored.runtime.get(cases["suspended"].id).status == "running"
            implementing = Case(restored, restored.runtime.get(cases["implementing"].id))
            implementing.send("implementation_suspended", {"suspension_reason": "Kinh phí"})
            assert implementing.open_elements() == ["suspension_review"]
            clock.advance(days=60)                 # the cycle's reminders come due and fire
            assert restored.runtime.fire_timers(cases["cycle"].id, principal=SCHEDULER) is not None
            # new rows take ids after the restored ones (sequences moved on PostgreSQL)
            fresh = Case.start(restored, "national", "proposal", "mau.sxd.qlxd.truongphong")
            assert fresh.open_elements() == ["submit_plan"]
            assert verify(restored.db).ok
        finally:
            restored.close()


@pytest.fixture
def target(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'target.sqlite3'}")
    db.upgrade()
    yield db
    db.dispose()


@pytest.fixture
def backup(engine, review, tmp_path):
    instance = engine.runtime.start("national", "review", principal=ALICE)
    [task] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(task.id, {}, principal=ALICE)
    path = tmp_path / "backup.json"
    export_file(engine.db, path)
    return path


@pytest.fixture
def backup_with_open_task(engine, review, tmp_path):
    """:func:`backup` with a second instance whose task is still open."""
    for complete in (True, False):
        instance = engine.runtime.start("national", "review", principal=ALICE)
        [task] = engine.runtime.open_tasks(instance.id)
        if complete:
            engine.runtime.complete_task(task.id, {}, principal=ALICE)
    path = tmp_path / "backup.json"
    export_file(engine.db, path)
    return path


def _refused(target, path, *fragments):
    with pytest.raises(BackupError) as refused:
        import_file(target, path)
    for fragment in fragments:
        assert fragment in refused.value.message, refused.value.message
    assert sum(_counts(target).values()) == 0
    return refused.value.message


def _edited(path, tmp_path, change):
    document = _document(path)
    change(document)
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(document), encoding="utf-8")
    return edited


def test_bad_documents_are_refused_by_name_with_nothing_written(backup, target, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text(backup.read_text(encoding="utf-8")[:200], encoding="utf-8")
    _refused(target, broken, "broken.json is not JSON", "line")
    _refused(target, _edited(backup, tmp_path, lambda d: d.update(version=2)),
             "version: this nd73 reads backup format version 1", "version 2")
    _refused(target, _edited(backup, tmp_path, lambda d: d.update(format="other")),
             "format: expected 'nd73-backup'")
    _refused(target, _edited(backup, tmp_path, lambda d: d.pop("tables")),
             "no 'tables' key")
    _refused(target, _edited(backup, tmp_path,
                             lambda d: d["tables"].update(nonsense={"columns": [],
                                                                    "rows": []})),
             "tables.nonsense: no such table")

    def bad_time(document):
        table = document["tables"]["instances"]
        table["rows"][0][table["columns"].index("started_at")] = "yesterday"
    _refused(target, _edited(backup, tmp_path, bad_time),
             "tables.instances.rows[0].started_at: not an ISO 8601 date and time")

    def short_row(document):
        document["tables"]["audit_events"]["rows"][1].pop()
    _refused(target, _edited(backup, tmp_path, short_row), "tables.audit_events.rows[1]")


def test_a_failure_late_in_the_import_writes_nothing(backup, target, tmp_path):
    def duplicate(document):
        rows = document["tables"]["human_tasks"]["rows"]
        rows.append(list(rows[0]))
    message = _refused(target, _edited(backup, tmp_path, duplicate),
                       "tables.human_tasks: the database refused a row",
                       "nothing was imported")
    assert "\n" not in message


def test_a_backup_with_a_broken_audit_chain_is_not_restored(backup, target, tmp_path):
    def tamper(document):
        table = document["tables"]["audit_events"]
        table["rows"][-1][table["columns"].index("actor")] = "mallory"
    _refused(target, _edited(backup, tmp_path, tamper), "audit log is broken",
             "entry does not match its hash")


def test_a_database_that_is_not_empty_is_refused(backup, engine):
    with pytest.raises(BackupError, match=r"not empty \(table \w+ has rows\)"):
        import_file(engine.db, backup)


def test_cli_export_and_import(engine, review, tmp_path, monkeypatch, target):
    engine.runtime.start("national", "review", principal=ALICE)
    runner = CliRunner()
    path = tmp_path / "cli.json"
    monkeypatch.setenv("ND73_DATABASE_URL", engine.db.url)
    result = runner.invoke(cli, ["export", str(path)])
    assert result.exit_code == 0 and result.stdout.startswith(f"wrote {path}: ")
    monkeypatch.setenv("ND73_DATABASE_URL", target.url)
    result = runner.invoke(cli, ["import", str(path)])
    assert result.exit_code == 0, result.output
    assert "audit log verified" in result.stdout
    assert runner.invoke(cli, ["audit", "verify"]).exit_code == 0
    result = runner.invoke(cli, ["import", str(path)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: the database is not empty")
    assert len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(cli, ["import", str(tmp_path / "missing.json")])
    assert result.exit_code == 1 and "cannot read" in result.stderr


def _without_candidacy_columns(document, *columns: str, schema: str) -> None:
    table = document["tables"]["task_candidates"]
    for column in columns:
        at = table["columns"].index(column)
        table["columns"].pop(at)
        for row in table["rows"]:
            row.pop(at)
    document["schema"] = schema


def _as_before_0009(document) -> None:
    """A backup as exported before migration 0009: candidacies without their instance
    (nor whether their task is open, which came later)."""
    _without_candidacy_columns(document, "instance_id", "task_open", schema="0008")


def _as_before_0010(document) -> None:
    """A backup as exported before migration 0010: candidacies without whether their task
    is open."""
    _without_candidacy_columns(document, "task_open", schema="0009")


def _restored_candidacies(target) -> set:
    with target.reading() as session:
        return {tuple(row) for row in session.execute(select(
            TaskCandidate.task_id, TaskCandidate.username, TaskCandidate.instance_id,
            TaskCandidate.task_open))}


@pytest.mark.parametrize("older", [_as_before_0009, _as_before_0010])
def test_a_backup_from_before_candidacies_carried_their_instance_and_state_is_restored(
        older, backup_with_open_task, target, tmp_path):
    backup = backup_with_open_task
    import_file(target, _edited(backup, tmp_path, older))
    document = _document(backup)
    original = document["tables"]["task_candidates"]
    columns = original["columns"]
    tasks = document["tables"]["human_tasks"]
    status = {row[tasks["columns"].index("id")]: row[tasks["columns"].index("status")]
              for row in tasks["rows"]}
    expected = {(r[columns.index("task_id")], r[columns.index("username")],
                 r[columns.index("instance_id")], r[columns.index("task_open")])
                for r in original["rows"]}
    # the backup holds candidacies of open tasks and of closed ones, and each says so
    assert {open_ for *_rest, open_ in expected} == {True, False}
    assert all(open_ == (status[task_id] == "open") for task_id, *_rest, open_ in expected)
    assert _restored_candidacies(target) == expected


def test_an_old_backup_with_a_candidacy_of_no_task_is_refused(backup, target, tmp_path):
    def orphan(document):
        _as_before_0009(document)
        table = document["tables"]["task_candidates"]
        table["rows"][0][table["columns"].index("task_id")] = "no-such-task"
    _refused(target, _edited(backup, tmp_path, orphan),
             "tables.task_candidates.rows[0]: task 'no-such-task' is not among")
