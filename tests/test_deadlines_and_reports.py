"""Working-day deadlines (weekends, Tết, a province's own days), reminders and escalations
driven by moving the engine clock, reporting cycles, and impossible dates in settings."""
from __future__ import annotations

import shutil
from datetime import date, datetime, timezone

import pytest

from engine.clock import as_utc
from engine.errors import DefinitionInvalid
from engine.scheduler import SCHEDULER
from engine.variants import load_variant
from engine.workdays import WorkingCalendar

from conftest import PROJECT
from procedures import SCREENED, PREFIX, VARIANTS, Case, as_user, deploy_library, plan, to_decision


@pytest.fixture
def library(engine):
    deploy_library(engine)
    return engine


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def fire_due_timers(engine) -> None:
    """What the scheduler does at its next ticks: fire what is due, then what that opened
    (a late report's own reminder and escalation) if it is due too."""
    for _ in range(5):
        fired = [engine.runtime.fire_timers(t.instance_id, principal=SCHEDULER)
                 for t in engine.runtime.due_timers()]
        if not any(fired):
            return


def test_calendar_skips_weekends_and_tet():
    calendar = WorkingCalendar()
    # Thursday 12/02/2026; Tết 2026 is Mon 16/02 – Fri 20/02
    due = calendar.add_working_days(datetime(2026, 2, 12, 10, 0, tzinfo=timezone.utc), 7)
    assert due.isoformat() == "2026-03-02T17:00:00+07:00"
    assert not calendar.is_working_day(date(2026, 2, 17))
    assert not calendar.is_working_day(date(2026, 2, 14))       # Saturday
    assert calendar.is_working_day(date(2026, 2, 23))
    assert calendar.working_days_between(date(2026, 2, 12), date(2026, 3, 2)) == 7


def test_calendar_reads_dates_in_vietnam_time():
    calendar = WorkingCalendar()
    # 18:30 UTC on Sunday is already Monday 01:30 in Hà Nội: one working day → Tuesday
    late_sunday = datetime(2026, 3, 8, 18, 30, tzinfo=timezone.utc)
    assert calendar.add_working_days(late_sunday, 1).date() == date(2026, 3, 10)


def test_province_days_off_and_make_up_working_days():
    calendar = WorkingCalendar(days_off=[date(2026, 3, 10)], working_days=[date(2026, 3, 14)])
    assert not calendar.is_working_day(date(2026, 3, 10))
    assert calendar.is_working_day(date(2026, 3, 14))           # a Saturday made up
    assert calendar.add_working_days(date(2026, 3, 9), 2).date() == date(2026, 3, 12)


@pytest.mark.parametrize("variant", VARIANTS)
def test_late_decision_is_reminded_then_escalated_across_tet(library, clock, variant):
    p = PREFIX[variant]
    clock.set(utc(2026, 2, 12, 2, 0))                            # Thursday before Tết
    case = to_decision(library, variant, f"{p}.sxd.qlxd.truongphong")
    case.vote({v: "for" for v in case.voters()})
    [decide] = case.open("decide")
    assert as_utc(decide.due_at) == utc(2026, 3, 2, 10, 0)      # 17:00 in Hà Nội
    assert as_utc(case.open("decide")[0].due_at) == as_utc(decide.due_at)

    def fire():
        for timer in library.runtime.due_timers():
            library.runtime.fire_timers(timer.instance_id, principal=SCHEDULER)

    clock.set(utc(2026, 2, 27, 10, 0))                           # Friday: not yet due
    fire()
    assert case.audit("reminder") == []
    clock.set(utc(2026, 3, 1, 10, 0))                            # the weekend passes
    fire()
    assert case.audit("reminder") == []
    clock.set(utc(2026, 3, 2, 10, 1))                            # Monday 17:01: late
    fire()
    [reminder] = case.audit("reminder")
    assert reminder.details["recipients"] == [f"{p}.sxd.giamdoc"]
    assert case.audit("escalation") == []
    clock.set(utc(2026, 3, 4, 10, 1))                            # two working days later
    fire()
    [escalation] = case.audit("escalation")
    assert escalation.details["recipients"] == [f"{p}.chutich"]  # the head's own superior
    assert case.open_elements() == ["decide"]                    # the process did not stop
    case.do("decide", {"decision": "approve"}, by=f"{p}.sxd.giamdoc")
    assert case.instance.stage == "implementing"


def test_evaluation_deadline_counts_from_the_completion_report(library, clock):
    clock.set(utc(2026, 4, 24, 2, 0))             # Friday before 27/04, 30/04 and 01/05 off
    case = Case.start(library, "national", "proposal", "mau.sxd.qlxd.truongphong")
    case.do("submit_plan", plan(start_date="2026-03-02", end_date="2026-04-30"),
            by="mau.sxd.qlxd.truongphong")
    case.do("screening", {**SCREENED, "is_complex": False})
    case.do("party_opinion", {"party_opinion": "agree"})
    case.vote({v: "for" for v in case.voters()})
    case.do("decide", {"decision": "approve"})
    case.do("implement", {"finished_on": "2026-04-24"}, by="mau.sxd.qlxd.truongphong")
    case.do("report_completion", {"result_summary": "Xong"}, by="mau.sxd.qlxd.truongphong")
    [opinion] = case.open("party_evaluation_opinion")
    # 7 working days after Fri 24/04: 28, 29, 04/05, 05, 06, 07, 08
    assert as_utc(opinion.due_at) == utc(2026, 5, 8, 10, 0)


# "trước ngày 30/11" is due by the end of 29/11 (23:59:59 in Hà Nội, 16:59:59 UTC)
@pytest.mark.parametrize("variant, deadline", [
    ("national", utc(2026, 11, 29, 16, 59, 59)), ("lao-cai", utc(2026, 11, 29, 16, 59, 59)),
    ("can-tho", utc(2026, 11, 29, 16, 59, 59)), ("dak-lak", utc(2026, 12, 9, 16, 59, 59)),
])
def test_reporting_cycle_fans_out_to_every_reporting_unit(library, clock, variant, deadline):
    unit = PREFIX[variant]
    expected = [f"{unit}.skhcn", f"{unit}.sxd", f"{unit}.xa"]
    clock.set(utc(2026, 11, 16, 1, 0))
    case = Case.start(library, variant, "annual_report", SCHEDULER,
                      data={"proposer_unit": unit})
    tasks = case.open("submit_report")
    assert sorted(t.unit_id for t in tasks) == expected
    for task in tasks:
        assert f"{task.unit_id}." in " ".join(case.candidates(task))
        assert as_utc(task.due_at) == deadline
    assert case.instance.stage == "reporting"
    for task in tasks:
        by = case.candidates(task)[0]
        library.runtime.complete_task(task.id, {"report": {
            "proposals_submitted": 2, "proposals_approved": 1, "summary": "Ổn định"}},
            principal=as_user(library, by))
    [consolidate] = case.open("consolidate")
    assert case.candidates(consolidate) == [f"{unit}.snv.chuyenvien", f"{unit}.snv.giamdoc"]
    consolidation = library.repository.settings(
        library.repository.latest(variant, "annual_report"))["reporting"]["consolidation_deadline"]
    day, month = map(int, consolidation.split("/"))
    assert as_utc(consolidate.due_at) == utc(2026, month, day - 1, 16, 59, 59)
    reports = library.runtime.task_data(consolidate.id)["reports"]
    assert [r["proposals_submitted"] for r in reports] == [2] * len(expected)
    case.do("consolidate", {"summary": "Tổng hợp", "document_number": "99/BC-SNV"})
    if variant == "dak-lak":          # Sở Nội vụ also reports to Bộ Nội vụ (0119/KH-UBND)
        [ministry] = case.open("report_to_ministry")
        assert case.candidates(ministry) == [f"{unit}.snv.chuyenvien", f"{unit}.snv.giamdoc"]
        case.do("report_to_ministry", {"ministry_summary": "Báo cáo Bộ Nội vụ"})
    assert (case.instance.status, case.instance.stage) == ("completed", "closed")


def test_a_cycle_for_over_a_thousand_units_opens_every_unit_s_task(library, clock):
    """1,100 communes under one province: every one gets its report task (SpiffWorkflow's
    task iterator stopped descending after about 1,000 subprocesses)."""
    from bench.fanout import add_units
    from engine.multi_instance import all_tasks
    pairs = add_units(library, 1100)
    library.org.invalidate()
    clock.set(utc(2026, 11, 16, 1, 0))
    instance = library.runtime.start("national", "annual_report", principal=SCHEDULER,
                                     data={"proposer_unit": "mau"})
    opened = {t.unit_id for t in library.runtime.open_tasks(instance.id)
              if t.element_id == "submit_report"}
    assert {unit for unit, _ in pairs} <= opened
    workflow = library.runtime.workflow(instance.id)
    reports = [t for t in all_tasks(workflow) if t.task_spec.name == "submit_report"]
    assert len(reports) == len(opened)
    assert {task.data["reporting_unit"] for task in reports} == opened
    [units] = [t for t in all_tasks(workflow) if t.task_spec.name == "annual_report_units"]
    assert len(units.data["reporting_units"]) == len(opened)
    head = pairs[-1][1]
    inbox = library.tasks.inbox(library.access.principal(head))
    assert [t.instance_id for t in inbox.items] == [instance.id]


def test_late_unit_report_is_reminded_then_escalated(library, clock):
    clock.set(utc(2026, 11, 2, 1, 0))
    case = Case.start(library, "lao-cai", "annual_report", SCHEDULER,
                      data={"proposer_unit": "laocai"})
    for task in case.open("submit_report"):
        if task.unit_id != "laocai.xa":
            library.runtime.complete_task(task.id, {"report": {"summary": "Đúng hạn"}},
                                          principal=as_user(library, case.candidates(task)[0]))
    clock.set(utc(2026, 11, 29, 18, 0))           # "trước ngày 30/11" has passed
    fire_due_timers(library)
    [late] = case.open("late_report")             # the consolidation is not held up
    assert late.unit_id == "laocai.xa" and case.open("consolidate")
    assert case.audit("reminder") == []
    clock.set(utc(2026, 12, 2, 11, 0))            # one, then two working days later
    fire_due_timers(library)
    [reminder] = case.audit("reminder")
    assert sorted(reminder.details["recipients"]) == ["laocai.xa.chutich", "laocai.xa.congchuc"]
    [escalation] = case.audit("escalation")
    # the staff member's head is the commune chairman; the chairman's is the province's
    assert sorted(escalation.details["recipients"]) == ["laocai.chutich", "laocai.xa.chutich"]


def test_dak_lak_department_cycle_units_office_province(library, clock):
    clock.set(utc(2026, 11, 16, 1, 0))
    case = Case.start(library, "dak-lak", "department_report", SCHEDULER,
                      data={"proposer_unit": "daklak.sxd"})
    tasks = case.open("submit_report")
    assert sorted(t.unit_id for t in tasks) == ["daklak.sxd.gt", "daklak.sxd.qhkt",
                                                "daklak.sxd.qlxd"]
    assert {as_utc(t.due_at) for t in tasks} == {utc(2026, 12, 4, 16, 59, 59)}  # before 05/12
    for task in tasks:
        library.runtime.complete_task(task.id, {"report": {"summary": "Báo cáo"}},
                                      principal=as_user(library, case.candidates(task)[0]))
    [office] = case.open("consolidate")
    assert case.candidates(office) == ["daklak.sxd.vp.chanhvp", "daklak.sxd.vp.chuyenvien"]
    assert as_utc(office.due_at) == utc(2026, 12, 9, 16, 59, 59)     # before 10/12


def test_dak_lak_province_cycle_uses_its_own_dates(library, clock):
    clock.set(utc(2026, 11, 16, 1, 0))
    case = Case.start(library, "dak-lak", "annual_report", SCHEDULER,
                      data={"proposer_unit": "daklak"})
    assert {as_utc(t.due_at) for t in case.open("submit_report")} == {
        utc(2026, 12, 9, 16, 59, 59)}                                # before 10/12


def test_impossible_date_fails_deployment_naming_file_field_and_date(engine, tmp_path):
    processes = tmp_path / "processes"
    shutil.copytree(PROJECT / "processes" / "national", processes / "national")
    shutil.copytree(PROJECT / "processes" / "dak-lak", processes / "dak-lak")
    settings = processes / "dak-lak" / "variant.toml"
    settings.write_text(settings.read_text(encoding="utf-8").replace(
        'unit_deadline = "05/12"', 'unit_deadline = "31/11"'), encoding="utf-8")
    with pytest.raises(DefinitionInvalid) as refused:
        engine.repository.deploy_folder(processes / "dak-lak", "designer",
                                        forms_dir=PROJECT / "forms")
    [problem] = refused.value.problems
    assert problem.file.startswith("dak-lak/variant.toml")
    assert "department_reporting.unit_deadline" in problem.file
    assert "31/11" in problem.message and "30" in problem.message
    assert engine.repository.versions() == []


def test_impossible_day_off_is_refused(tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "variant.toml").write_text('name = "x"\n[calendar]\ndays_off = ["30/02/2026"]\n')
    with pytest.raises(DefinitionInvalid, match="30/02/2026"):
        load_variant(folder)


def test_variant_changes_only_its_own_files():
    national = load_variant(PROJECT / "processes" / "national")
    lao_cai = load_variant(PROJECT / "processes" / "lao-cai")
    assert {s.name for s in national.sources} <= {s.name for s in lao_cai.sources}
    assert lao_cai.settings["routing"]["via_home_affairs_for"] == ["head"]
    assert lao_cai.settings["deadlines"] == national.settings["deadlines"]
    dak_lak = load_variant(PROJECT / "processes" / "dak-lak")
    assert "department_report.bpmn" in {s.name for s in dak_lak.sources}
    assert dak_lak.settings["reporting"]["unit_deadline"] == "10/12"


def test_settings_change_makes_a_new_version(engine, tmp_path):
    processes = tmp_path / "processes"
    shutil.copytree(PROJECT / "processes" / "national", processes / "national")
    shutil.copytree(PROJECT / "processes" / "lao-cai", processes / "lao-cai")
    first = engine.repository.deploy_folder(processes / "lao-cai", "d", PROJECT / "forms")
    settings = processes / "lao-cai" / "variant.toml"
    settings.write_text(settings.read_text(encoding="utf-8").replace(
        'unit_deadline = "30/11"', 'unit_deadline = "28/11"'), encoding="utf-8")
    second = engine.repository.deploy_folder(processes / "lao-cai", "d", PROJECT / "forms")
    assert all(r.created and r.version == 2 for r in second)
    assert {r.key for r in first} == {r.key for r in second}
