"""Reporting cycles as the provinces' plans write them (issue 19): "trước ngày X" dates,
dates no source gives named at deployment, a consolidation that does not wait for a late
unit, Đắk Lắk's S&T plan report, Sở Nội vụ's report to Bộ Nội vụ, and the half-year,
multi-year and ad-hoc cycles on the same pattern. Everything through the runtime, moving
the engine clock."""
from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.clock import as_utc
from engine.deadlines import sandbox_functions, variant_settings
from engine.errors import DefinitionInvalid, Forbidden
from engine.scheduler import SCHEDULER
from engine.store import Instance
from engine.variants import load_variant, unconfirmed_settings

from conftest import PROJECT, child_environment
from procedures import PREFIX, VARIANTS, Case, as_user, deploy_library

ND73 = Path(sys.executable).with_name("nd73")


@pytest.fixture
def library(engine):
    deploy_library(engine)
    return engine


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


_ONE_DAY = timedelta(days=1)


def end_of_day_before(year, month, day) -> datetime:
    """23:59:59 in Hà Nội on the day before ``day``/``month``, in UTC (16:59:59)."""
    return utc(year, month, day, 16, 59, 59) - _ONE_DAY


def fire_due_timers(engine) -> None:
    """The scheduler's next ticks: fire what is due, then what that opened, if due too."""
    for _ in range(5):
        fired = [engine.runtime.fire_timers(t.instance_id, principal=SCHEDULER)
                 for t in engine.runtime.due_timers()]
        if not any(fired):
            return


def submit(engine, case, task, report=None):
    engine.runtime.complete_task(task.id, {"report": report or {"summary": "Báo cáo"}},
                                 principal=as_user(engine, case.candidates(task)[0]))


# --- item 10: dates no source gives are named; "trước ngày X" ---------------------------------

def _validate(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(ND73), "validate", str(folder)], capture_output=True,
                          text=True, env=child_environment(), cwd=PROJECT, timeout=120)


@pytest.mark.parametrize("variant, named, not_named", [
    ("national", ["national/variant.toml: reporting.unit_deadline = '30/11'",
                  "national/variant.toml: reporting.consolidation_deadline = '10/12'"], []),
    ("can-tho", ["national/variant.toml: reporting.unit_deadline = '30/11'",
                 "national/variant.toml: reporting.consolidation_deadline = '10/12'"], []),
    ("lao-cai", ["lao-cai/variant.toml: reporting.consolidation_deadline = '10/12'"],
     ["reporting.unit_deadline"]),                       # 30/11 is Lào Cai's own letter
    ("dak-lak", ["dak-lak/variant.toml: reporting.consolidation_deadline = '20/12'",
                 "dak-lak/variant.toml: st_plan_reporting.unit_deadline = '30/11'"],
     ["reporting.unit_deadline", "department_reporting"]),   # 10/12, 05/12: the plans
])
def test_dates_no_source_gives_are_named_when_validating(variant, named, not_named):
    result = _validate(PROJECT / "processes" / variant)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    for text in named:
        assert any(text in w and "confirm" in w for w in warnings), (text, warnings)
    for text in not_named:
        assert not any(f" {text}" in w for w in warnings), (text, warnings)
    assert f"{variant}/annual_report: valid" in result.stdout


def test_deploying_names_the_dates_to_confirm_and_still_deploys(engine):
    env = {**child_environment(), "ND73_DATABASE_URL": engine.db.url}
    result = subprocess.run([str(ND73), "deploy", "--by", "ci", "processes/lao-cai"],
                            capture_output=True, text=True, env=env, cwd=PROJECT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert ("warning: lao-cai/variant.toml: reporting.consolidation_deadline = '10/12' is a "
            "default no source gives; the designer must confirm it") in result.stderr
    assert "lao-cai/annual_report: version 1 deployed" in result.stdout


def test_a_province_confirms_an_inherited_default_by_setting_it(tmp_path):
    processes = tmp_path / "processes"
    shutil.copytree(PROJECT / "processes" / "national", processes / "national")
    shutil.copytree(PROJECT / "processes" / "can-tho", processes / "can-tho")
    before = unconfirmed_settings(load_variant(processes / "can-tho").settings)
    assert any(": reporting.unit_deadline" in w for w in before)
    settings = processes / "can-tho" / "variant.toml"
    settings.write_text(settings.read_text(encoding="utf-8")
                        + '\n[reporting]\nunit_deadline = "05/12"\n', encoding="utf-8")
    after = unconfirmed_settings(load_variant(processes / "can-tho").settings)
    assert not any(": reporting.unit_deadline" in w for w in after)
    assert any(": reporting.consolidation_deadline" in w for w in after)   # still inherited


def test_a_mark_naming_no_setting_is_refused(tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "variant.toml").write_text(
        'name = "x"\n[unconfirmed]\n"reporting.no_such_date" = "?"\n', encoding="utf-8")
    with pytest.raises(DefinitionInvalid, match="reporting.no_such_date"):
        load_variant(folder)


@pytest.mark.parametrize("variant", VARIANTS)
def test_before_day_x_is_due_by_the_end_of_the_day_before(library, clock, variant):
    unit = PREFIX[variant]
    day, month = map(int, load_variant(PROJECT / "processes" / variant)
                     .settings["reporting"]["unit_deadline"].split("/"))
    clock.set(utc(2026, 11, 16, 1, 0))
    case = Case.start(library, variant, "annual_report", SCHEDULER,
                      data={"proposer_unit": unit})
    first, second, *rest = case.open("submit_report")
    due = end_of_day_before(2026, month, day)
    assert as_utc(first.due_at) == due                    # 23:59:59 the day before, Hà Nội
    clock.set(due - timedelta(minutes=1))                 # 23:58:59 the day before
    fire_due_timers(library)
    submit(library, case, first)                          # on time
    clock.set(utc(2026, month, day, 0, 0))                # 07:00 on day X in Hà Nội: late
    fire_due_timers(library)
    reports = library.runtime.task_data(case.open("consolidate")[0].id)["reports"]
    late = {r["unit"] for r in reports if r["late"]}
    assert first.unit_id not in late and second.unit_id in late


# --- a consolidation that proceeds when a unit is late -------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_consolidation_proceeds_when_a_unit_is_late_and_records_its_late_report(
        library, clock, variant):
    unit = PREFIX[variant]
    clock.set(utc(2026, 11, 16, 1, 0))
    case = Case.start(library, variant, "annual_report", SCHEDULER,
                      data={"proposer_unit": unit})
    late_unit = f"{unit}.xa"
    for task in case.open("submit_report"):
        if task.unit_id != late_unit:
            submit(library, case, task, {"proposals_submitted": 3, "summary": "Đúng hạn"})
    assert case.open("consolidate") == []                 # waiting for the commune
    due = case.open("submit_report")[0].due_at
    clock.set(as_utc(due) + timedelta(hours=1))            # an hour after the unit's date
    fire_due_timers(library)
    [consolidate] = case.open("consolidate")              # not blocked by the missing unit
    data = library.runtime.task_data(consolidate.id)
    assert data["late_units"] == [late_unit]
    [missing] = [r for r in data["reports"] if r["unit"] == late_unit]
    assert missing == {"unit": late_unit, "late": True,   # marked late, no figures
                       "summary": "Chậm báo cáo: chưa gửi báo cáo trong hạn"}
    assert all(not r["late"] and r["proposals_submitted"] == 3
               for r in data["reports"] if r["unit"] != late_unit)
    assert case.open("submit_report") == []
    # the late report still arrives, and is recorded as late
    [late] = case.open("late_report")
    assert late.unit_id == late_unit
    assert f"{late_unit}." in " ".join(case.candidates(late))
    submit(library, case, late, {"proposals_submitted": 1, "summary": "Gửi chậm"})
    case.do("consolidate", {"summary": "Tổng hợp; xã báo cáo chậm"})
    if variant == "dak-lak":
        case.do("report_to_ministry", {"ministry_summary": "Báo cáo Bộ Nội vụ"})
    assert (case.instance.status, case.instance.stage) == ("completed", "closed")
    [received] = [t for t in library.runtime.workflow(case.id).get_tasks()
                  if t.task_spec.name == "late_reports_received"][0].data["late_reports"]
    assert received["unit"] == late_unit and received["late"] is True
    assert received["proposals_submitted"] == 1 and received["received_at"]


def test_a_cycle_whose_units_all_report_on_time_marks_nobody_late(library, clock):
    clock.set(utc(2026, 11, 16, 1, 0))
    case = Case.start(library, "lao-cai", "annual_report", SCHEDULER,
                      data={"proposer_unit": "laocai"})
    for task in case.open("submit_report"):
        submit(library, case, task)
    [consolidate] = case.open("consolidate")
    data = library.runtime.task_data(consolidate.id)
    assert data["late_units"] == [] and not any(r["late"] for r in data["reports"])
    assert case.open("late_report") == []


# --- Sở Nội vụ's report to Bộ Nội vụ -------------------------------------------------------------

def test_dak_lak_home_affairs_reports_on_to_the_ministry(library, clock):
    clock.set(utc(2026, 11, 16, 1, 0))
    case = Case.start(library, "dak-lak", "annual_report", SCHEDULER,
                      data={"proposer_unit": "daklak"})
    for task in case.open("submit_report"):
        submit(library, case, task)
    case.do("consolidate", {"summary": "Tổng hợp", "document_number": "12/BC-SNV"})
    [ministry] = case.open("report_to_ministry")
    assert case.candidates(ministry) == ["daklak.snv.chuyenvien", "daklak.snv.giamdoc"]
    assert as_utc(ministry.due_at) == end_of_day_before(2026, 12, 31)   # default, to confirm
    case.do("report_to_ministry", {"ministry_summary": "Kết quả năm 2026",
                                   "ministry_document_number": "13/BC-SNV"})
    assert (case.instance.status, case.instance.stage) == ("completed", "closed")


@pytest.mark.parametrize("variant", ["national", "lao-cai", "can-tho"])
def test_other_variants_do_not_report_to_the_ministry_by_default(library, clock, variant):
    clock.set(utc(2026, 11, 16, 1, 0))
    case = Case.start(library, variant, "annual_report", SCHEDULER,
                      data={"proposer_unit": PREFIX[variant]})
    for task in case.open("submit_report"):
        submit(library, case, task)
    case.do("consolidate", {"summary": "Tổng hợp"})
    assert case.instance.status == "completed"


# --- Đắk Lắk Department of Construction: the S&T plan report ----------------------------------

def test_dak_lak_construction_st_plan_report_goes_office_to_science_department(library, clock):
    clock.set(utc(2026, 11, 16, 1, 0))
    case = Case.start(library, "dak-lak", "st_plan_report", SCHEDULER,
                      data={"proposer_unit": "daklak.sxd"})
    tasks = case.open("submit_report")
    assert sorted(t.unit_id for t in tasks) == ["daklak.sxd.gt", "daklak.sxd.qhkt",
                                                "daklak.sxd.qlxd"]
    # the plan's "31/11" does not exist: 30/11 is the date the Department must confirm
    assert {as_utc(t.due_at) for t in tasks} == {end_of_day_before(2026, 11, 30)}
    for task in tasks:
        submit(library, case, task)
    [office] = case.open("consolidate")
    assert case.candidates(office) == ["daklak.sxd.vp.chanhvp", "daklak.sxd.vp.chuyenvien"]
    assert as_utc(office.due_at) == end_of_day_before(2026, 12, 5)   # before 05/12
    case.do("consolidate", {"summary": "Báo cáo Sở KH&CN"})
    assert case.instance.status == "completed"


def test_the_st_plan_s_31_11_still_fails_deployment_naming_file_and_field(engine, tmp_path):
    processes = tmp_path / "processes"
    shutil.copytree(PROJECT / "processes" / "national", processes / "national")
    shutil.copytree(PROJECT / "processes" / "dak-lak", processes / "dak-lak")
    settings = processes / "dak-lak" / "variant.toml"
    text = settings.read_text(encoding="utf-8")
    st_plan = text.index("[st_plan_reporting]")
    settings.write_text(text[:st_plan] + text[st_plan:].replace(
        'unit_deadline = "30/11"', 'unit_deadline = "31/11"', 1), encoding="utf-8")
    with pytest.raises(DefinitionInvalid) as refused:
        engine.repository.deploy_folder(processes / "dak-lak", "designer",
                                        forms_dir=PROJECT / "forms")
    [problem] = refused.value.problems
    assert problem.file == "dak-lak/variant.toml: st_plan_reporting.unit_deadline"
    assert "31/11" in problem.message and "30 days" in problem.message
    assert engine.repository.versions() == []


# --- half-year, multi-year and ad-hoc cycles -----------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_half_year_review_runs_the_same_pattern_on_its_own_dates(library, clock, variant):
    unit = PREFIX[variant]
    clock.set(utc(2026, 6, 1, 1, 0))
    case = Case.start(library, variant, "half_year_report", SCHEDULER,
                      data={"proposer_unit": unit})
    tasks = case.open("submit_report")
    assert sorted(t.unit_id for t in tasks) == [f"{unit}.skhcn", f"{unit}.sxd", f"{unit}.xa"]
    assert {as_utc(t.due_at) for t in tasks} == {end_of_day_before(2026, 6, 20)}
    assert "proposals_submitted" in library.runtime.task_data(tasks[0].id)["report"]
    for task in tasks[1:]:
        submit(library, case, task)
    clock.set(utc(2026, 6, 20, 1, 0))
    fire_due_timers(library)
    [consolidate] = case.open("consolidate")
    assert as_utc(consolidate.due_at) == end_of_day_before(2026, 6, 30)
    assert library.runtime.task_data(consolidate.id)["late_units"] == [tasks[0].unit_id]


def test_multi_year_review_sums_the_period_and_runs_every_five_years(library, clock):
    settings = load_variant(PROJECT / "processes" / "national").settings
    with variant_settings(settings):
        functions = sandbox_functions(library.clock)
        assert functions["report_cycle"]("multi_year_reporting") == \
            "R/2030-10-01T08:00:00+07:00/P5Y"
        assert functions["report_cycle"]().endswith("/P1Y")
    clock.set(utc(2030, 10, 1, 1, 0))
    case = Case.start(library, "lao-cai", "multi_year_report", SCHEDULER,
                      data={"proposer_unit": "laocai"})
    tasks = case.open("submit_report")
    data = library.runtime.task_data(tasks[0].id)
    assert (data["first_year"], data["report_year"]) == (2026, 2030)
    assert set(data["report"]) >= {"proposals_submitted", "overdue_steps"}
    assert {as_utc(t.due_at) for t in tasks} == {end_of_day_before(2030, 11, 1)}


ADMIN = "laocai.quantri"


def test_ad_hoc_report_is_started_by_an_administrator_with_its_own_dates(library, clock):
    clock.set(utc(2026, 3, 2, 2, 0))
    request = {"adhoc_subject": "Báo cáo nhanh theo yêu cầu của Bộ Nội vụ",
               "adhoc_unit_before": "2026-03-10", "adhoc_consolidation_before": "2026-03-13",
               "proposer_unit": "laocai"}
    with pytest.raises(Forbidden):
        library.runtime.start("lao-cai", "adhoc_report",
                              principal=as_user(library, "laocai.sxd.giamdoc"), data=request)
    case = Case.start(library, "lao-cai", "adhoc_report", as_user(library, ADMIN),
                      data=request)
    tasks = case.open("submit_report")
    assert sorted(t.unit_id for t in tasks) == ["laocai.skhcn", "laocai.sxd", "laocai.xa"]
    assert {as_utc(t.due_at) for t in tasks} == {end_of_day_before(2026, 3, 10)}
    submit(library, case, tasks[0])
    clock.set(utc(2026, 3, 10, 1, 0))
    fire_due_timers(library)
    [consolidate] = case.open("consolidate")
    assert as_utc(consolidate.due_at) == end_of_day_before(2026, 3, 13)
    assert sorted(library.runtime.task_data(consolidate.id)["late_units"]) == sorted(
        t.unit_id for t in tasks[1:])


@pytest.mark.parametrize("variant", VARIANTS)
def test_ad_hoc_dates_that_cannot_work_are_refused_before_anything_starts(
        engine, clock, server, variant):
    """The request form's own keywords (``x-after``), no rule of the BPMN: the units' date is
    after today, the consolidation's after the units'; each refusal names its field."""
    clock.set(utc(2026, 3, 2, 2, 0))                    # Monday 02/03/2026, 09:00
    admin = f"{PREFIX[variant]}.quantri"

    def start(unit_before: str, consolidation_before: str):
        return server.post("/instances", admin, json={
            "definition_key": "adhoc_report", "variant": variant, "unit_id": PREFIX[variant],
            "data": {"adhoc_subject": "Báo cáo nhanh", "adhoc_unit_before": unit_before,
                     "adhoc_consolidation_before": consolidation_before}})

    def refused(unit_before: str, consolidation_before: str) -> dict:
        answer = start(unit_before, consolidation_before)
        assert answer.status_code == 422, answer.text
        [error] = answer.json()["errors"]
        return error

    error = refused("2026-03-02", "2026-03-13")          # today: nothing left to report in
    assert (error["field"], error["code"]) == ("adhoc_unit_before",
                                               "form.date_must_be_after_today")
    assert error["message"] == "“Đơn vị báo cáo trước ngày” phải sau hôm nay (02/03/2026)"
    error = refused("2026-02-27", "2026-03-13")          # already past
    assert error["field"] == "adhoc_unit_before"
    error = refused("2026-03-10", "2026-03-10")          # not after the units' date
    assert (error["field"], error["code"]) == ("adhoc_consolidation_before",
                                               "form.date_must_be_after")
    assert error["message"] == ("“Tổng hợp trước ngày” phải sau “Đơn vị báo cáo trước ngày” "
                                "(10/03/2026)")
    with engine.db.reading() as session:
        assert session.scalars(select(Instance).where(
            Instance.definition_key == "adhoc_report")).all() == []
    # tomorrow for the units, the day after for the consolidation: the cycle opens
    answer = start("2026-03-03", "2026-03-04")
    assert answer.status_code == 201, answer.text
    # the BPMN has no rule of its own for it any more
    bpmn = (PROJECT / "processes" / "national" / "adhoc_report.bpmn").read_text("utf-8")
    assert "nd73:validation" not in bpmn
