"""Dry-runs of a procedure with scripted decisions, on a throw-away database (engine/dryrun.py),
from the command line (``nd73 validate`` / ``nd73 deploy``)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from conftest import PROJECT, child_environment
from engine.dryrun import load_deployed, load_folder, load_scripts, parse_script, run_script
from engine.store import AuditEvent, HumanTask, Instance, Membership, Timer
from engine.store.models import Document, Notification
from engine.workdays import WorkingCalendar
from procedures import VARIANTS, deploy_library

ND73 = Path(sys.executable).with_name("nd73")
LAO_CAI = PROJECT / "processes" / "lao-cai"
TABLES = (Instance, HumanTask, Timer, Document, Notification, AuditEvent)


def script_of(variant: str, **replace: str):
    [path] = sorted((PROJECT / "processes" / variant / "dryrun").glob("*.toml"))
    text = path.read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text, f"{path.name} has no {old!r}"
        text = text.replace(old, new)
    return parse_script(text, path.stem, f"{variant}/dryrun/{path.name}")


def counts(engine) -> dict[str, int]:
    with engine.db.reading() as session:
        return {table.__tablename__: session.scalar(select(func.count()).select_from(table))
                for table in TABLES}


def tasks_of(result, element_id: str) -> list[dict]:
    return [t for t in result.tasks if t["element_id"] == element_id]


def test_dry_run_of_deployed_definitions_writes_nothing_to_the_real_database(engine):
    deploy_library(engine)
    before = counts(engine)
    result = run_script(script_of("lao-cai"), load_deployed(engine, "lao-cai"))
    assert counts(engine) == before
    assert result.passed, result.problems()
    path = [step["element_id"] for step in result.path]
    assert path[:2] == ["start", "submit_plan"]
    assert path.index("screening") < path.index("leadership_meeting") < path.index("decide")
    assert result.path[-1] == {"element_id": "end_refused", "type": "EndEvent",
                               "name": "Từ chối bằng văn bản"}
    [decide] = tasks_of(result, "decide")
    assert decide["name"] == "Quyết định phê duyệt hoặc từ chối"
    assert decide["candidates"] == [{"username": "laocai.sxd.giamdoc",
                                     "full_name": "Đỗ Thanh Mai",
                                     "positions": [{"position": "head",
                                                    "unit": "Sở Xây dựng"}]}]
    assert decide["due"] == "02/03/2026"
    assert len(tasks_of(result, "leadership_meeting")) == 1     # the meeting's record
    assert [(d["kind"], d["reference"], d["agency"]) for d in result.documents] == [
        ("BB", "01/BB-SXD", "Sở Xây dựng"), ("CV", "01/CV-SXD", "Sở Xây dựng")]
    # the Director let the decision run late: reminded at its due time
    assert "decide_reminder" in path
    assert any(n["to"] == "Đỗ Thanh Mai" and n["kind"] == "reminder"
               for n in result.notifications)


def test_due_date_skips_the_weekend_and_the_holidays():
    # Wednesday 29/04/2026: 30/04 and 01/05 are holidays, 02–03/05 a weekend
    result = run_script(script_of("dak-lak"), load_folder(PROJECT / "processes" / "dak-lak"))
    assert result.passed, result.problems()
    [decide] = tasks_of(result, "decide")
    assert decide["created"] == "29/04/2026 09:00"
    assert decide["due"] == "12/05/2026"
    calendar = WorkingCalendar()
    assert not calendar.is_working_day(date(2026, 4, 30))
    assert not calendar.is_working_day(date(2026, 5, 2))
    assert calendar.working_days_between(date(2026, 4, 29), date(2026, 5, 12)) == 7


def test_lao_cai_decision_due_date_crosses_tet():
    result = run_script(script_of("lao-cai"), load_folder(LAO_CAI))
    [decide] = tasks_of(result, "decide")
    assert decide["created"].startswith("12/02/2026")
    assert decide["due"] == "02/03/2026"          # Tết 16–20/02 and three weekends skipped


def test_a_failed_expectation_is_reported_with_its_step():
    script = script_of("lao-cai", **{'decide = "02/03/2026"': 'decide = "27/02/2026"'})
    result = run_script(script, load_folder(LAO_CAI))
    assert not result.passed
    [failure] = result.failures
    assert (failure.step, failure.element_id, failure.code) == (5, "decide",
                                                                "dryrun.expected_due")
    assert failure.element_name == "Quyết định phê duyệt hoặc từ chối"
    assert result.problems() == ["lao-cai/dryrun/tu_choi_qua_tet.toml, step 5 [decide]: "
                                 "decide: expected due 27/02/2026, got 02/03/2026"]


def test_a_step_that_is_not_open_and_a_refused_step_are_named():
    wrong_task = script_of("lao-cai", **{'task = "party_opinion"': 'task = "evaluate"'})
    result = run_script(wrong_task, load_folder(LAO_CAI))
    [failure] = result.failures
    assert (failure.step, failure.code) == (3, "dryrun.not_open")
    assert "open: party_opinion" in failure.message
    refused = script_of("lao-cai", **{'refusal_reasons = "Đã có quy định điều chỉnh nội dung '
                                      'này"': 'refusal_reasons = ""'})
    result = run_script(refused, load_folder(LAO_CAI))
    [failure] = result.failures
    assert (failure.step, failure.code) == (5, "dryrun.refused")
    assert "refusal_reasons" in failure.message


def test_a_step_nobody_can_do_is_an_incident_named_by_its_element():
    def without_director(engine):
        variant = load_folder(LAO_CAI)(engine)
        with engine.db.transaction() as session:
            session.execute(delete(Membership).where(
                Membership.username == "laocai.sxd.giamdoc"))
        engine.org.invalidate()
        return variant

    result = run_script(script_of("lao-cai"), without_director)
    assert not result.passed
    [incident] = result.incidents
    assert incident.element_id == "screening"
    assert incident.element_name == "Tiếp nhận, xem xét phạm vi và tính chất"
    assert result.problems()[0].startswith("lao-cai/dryrun/tu_choi_qua_tet.toml")


def test_a_script_error_is_an_incident_named_by_its_element():
    xml = (PROJECT / "processes" / "national" / "proposal.bpmn").read_text(encoding="utf-8")
    broken = xml.replace('decision_due = deadline("decision")',
                         'decision_due = deadline("no_such_deadline")')
    assert broken != xml

    def with_broken_route(engine):
        variant = load_folder(LAO_CAI)(engine)
        engine.repository.deploy_upload(variant, {"proposal.bpmn": broken.encode()}, "test")
        return variant

    result = run_script(script_of("lao-cai"), with_broken_route)
    assert not result.passed
    [incident] = result.incidents
    assert (incident.step, incident.element_id, incident.element_name) == (
        1, "route", "Xác định người có thẩm quyền")             # submitting the plan ran it
    assert "no_such_deadline" in incident.message
    assert result.final_status == "incident"


def test_scripts_are_checked_with_the_field_named():
    from engine.errors import DefinitionInvalid
    with pytest.raises(DefinitionInvalid) as refused:
        parse_script('process = "proposal"\nstarted_by = "x"\nstarts_at = "31/11/2026"\n'
                     '[[steps]]\ndata = {}\n', "bad", "lao-cai/dryrun/bad.toml")
    problems = [str(p) for p in refused.value.problems]
    assert any("steps[1].task" in p for p in problems)
    assert any("31/11/2026" in p for p in problems)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_keeps_a_passing_script(variant):
    scripts = load_scripts(PROJECT / "processes" / variant)
    assert scripts
    for script in scripts:
        result = run_script(script, load_folder(PROJECT / "processes" / variant))
        assert result.passed, result.problems()


def _copy_processes(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(PROJECT / "processes", root / "processes")
    shutil.copytree(PROJECT / "forms", root / "forms")
    return root / "processes"


def test_validate_and_deploy_run_the_dry_run_scripts(tmp_path):
    processes = _copy_processes(tmp_path)
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    env = {**child_environment(), "ND73_DATABASE_URL": url}

    def nd73(*args):
        return subprocess.run([str(ND73), *args], capture_output=True, text=True, env=env,
                              cwd=PROJECT, timeout=300)

    passed = nd73("validate", str(processes / "national"), str(processes / "lao-cai"))
    assert passed.returncode == 0, passed.stderr
    assert "lao-cai/dryrun/tu_choi_qua_tet.toml: dry-run passed (ended at end_refused)" \
        in passed.stdout
    script = processes / "lao-cai" / "dryrun" / "tu_choi_qua_tet.toml"
    script.write_text(script.read_text(encoding="utf-8").replace(
        'decide = "02/03/2026"', 'decide = "27/02/2026"'), encoding="utf-8")
    failed = nd73("validate", str(processes / "lao-cai"))
    assert failed.returncode == 1
    assert ("error: dry-run lao-cai/dryrun/tu_choi_qua_tet.toml, step 5 [decide]: decide: "
            "expected due 27/02/2026, got 02/03/2026") in failed.stderr
    assert nd73("db", "upgrade").returncode == 0
    refused = nd73("deploy", str(processes / "lao-cai"))
    assert refused.returncode == 1
    assert "step 5 [decide]" in refused.stderr and "nothing was deployed" in refused.stderr
    from engine.store import Database
    database = Database(url)
    try:
        with database.reading() as session:
            assert session.scalar(select(func.count()).select_from(Instance)) == 0
            from engine.store import Definition
            assert session.scalar(select(func.count()).select_from(Definition)) == 0
    finally:
        database.dispose()
