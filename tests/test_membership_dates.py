"""A position counts only between its from–to dates (local days, Asia/Ho_Chi_Minh, by the
engine's clock): before its first day and after its last it gives its holder no role, no
task and no sight of the unit's work."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from engine.errors import InvalidData
from engine.variants import load_variant
from conftest import PROJECT
from procedures import Case, as_user, deploy_library, plan

ADMIN = "laocai.quantri"
HEAD = "laocai.sxd.giamdoc"
PROPOSER = "laocai.sxd.qlxd.truongphong"
OFFICIAL = "laocai.sxd.qlxd.chuyenvien"
LAO_CAI = load_variant(PROJECT / "processes" / "lao-cai").settings


def local_midnight(day: date) -> datetime:
    """00:00 in Hà Nội of ``day``, as UTC (17:00 of the day before)."""
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc) - timedelta(hours=7)


def leadership(engine) -> list[str]:
    return engine.org.resolve("leadership", proposer=None, unit_id="laocai.sxd.qlxd",
                              settings=LAO_CAI).usernames


def test_a_position_counts_from_its_first_day_to_its_last(engine, clock):
    deploy_library(engine)
    assert clock.now().date() == date(2026, 1, 5)
    engine.orgadmin.add_membership(as_user(engine, ADMIN), "lao-cai", OFFICIAL, "laocai.sxd",
                                   "deputy", valid_from=date(2026, 2, 1),
                                   valid_to=date(2026, 3, 31))

    def counts() -> bool:
        in_tree = OFFICIAL in engine.org.members("laocai.sxd", ["deputy"])
        assert (OFFICIAL in leadership(engine)) == in_tree
        assert ("laocai.sxd" in as_user(engine, OFFICIAL).units) == in_tree
        return in_tree

    assert not counts()                                  # appointed, not yet in office
    clock.set(local_midnight(date(2026, 2, 1)) - timedelta(seconds=1))
    assert not counts()                                  # 23:59:59 on 31/01, Hà Nội
    clock.advance(seconds=1)
    assert counts()                                      # 00:00 on 01/02
    clock.set(local_midnight(date(2026, 4, 1)) - timedelta(seconds=1))
    assert counts()                                      # the last day, 31/03, included
    clock.advance(seconds=1)
    assert not counts()                                  # 01/04: the position has ended
    # the official keeps their other position
    assert as_user(engine, OFFICIAL).units == ("laocai.sxd.qlxd",)


def test_a_task_is_routed_only_to_a_head_whose_term_is_running(engine, clock):
    deploy_library(engine)
    admin = as_user(engine, ADMIN)
    # the head's appointment ends on 31/01/2026
    engine.orgadmin.add_membership(admin, "lao-cai", HEAD, "laocai.sxd", "head",
                                   valid_from=date(2020, 1, 1), valid_to=date(2026, 1, 31))
    before = Case.start(engine, "lao-cai", "proposal", PROPOSER)
    before.do("submit_plan", plan(), by=PROPOSER)
    assert before.candidates(before.open("screening")[0]) == [HEAD]

    clock.set(local_midnight(date(2026, 2, 1)))
    after = Case.start(engine, "lao-cai", "proposal", PROPOSER)
    after.do("submit_plan", plan("Số hoá hồ sơ đất đai"), by=PROPOSER)
    [task] = after.open("screening")
    assert HEAD not in after.candidates(task)
    assert engine.access.principal(HEAD) is not None     # still an official, not a head
    assert "laocai.sxd" not in as_user(engine, HEAD).units


def test_a_head_appointed_from_a_later_day_takes_over_on_that_day(engine, clock):
    deploy_library(engine)
    admin = as_user(engine, ADMIN)
    waiting = Case.start(engine, "lao-cai", "proposal", PROPOSER)
    waiting.do("submit_plan", plan(), by=PROPOSER)
    [task] = waiting.open("screening")
    assert waiting.candidates(task) == [HEAD]
    engine.orgadmin.save_official(admin, "lao-cai", "laocai.sxd.gd2", full_name="Hoàng Thị Mai")
    moved = engine.orgadmin.add_membership(admin, "lao-cai", "laocai.sxd.gd2", "laocai.sxd",
                                           "head", valid_from=date(2026, 2, 1))
    # until 31/01 the holder stays head, with their tasks
    assert moved == {"reassigned": []}
    assert engine.org.members("laocai.sxd", ["head"]) == [HEAD]
    assert waiting.candidates(waiting.open("screening")[0]) == [HEAD]
    _, held = engine.orgadmin.official("lao-cai", HEAD)
    [term] = [m for m in held if (m.unit_id, m.position) == ("laocai.sxd", "head")]
    assert term.valid_to == date(2026, 1, 31)
    clock.set(local_midnight(date(2026, 2, 1)) - timedelta(seconds=1))
    assert engine.org.members("laocai.sxd", ["head"]) == [HEAD]
    # from 01/02 the new head is the only one
    clock.advance(seconds=1)
    assert engine.org.members("laocai.sxd", ["head"]) == ["laocai.sxd.gd2"]
    after = Case.start(engine, "lao-cai", "proposal", PROPOSER)
    after.do("submit_plan", plan("Số hoá hồ sơ đất đai"), by=PROPOSER)
    assert after.candidates(after.open("screening")[0]) == ["laocai.sxd.gd2"]

    # appointed from today, the holder stops at once and their open tasks pass on
    engine.orgadmin.save_official(admin, "lao-cai", "laocai.sxd.gd3", full_name="Lý Văn Tú")
    moved = engine.orgadmin.add_membership(admin, "lao-cai", "laocai.sxd.gd3", "laocai.sxd",
                                           "head")
    assert sorted((m["from"], m["to"]) for m in moved["reassigned"]) == [
        ("laocai.sxd.gd2", "laocai.sxd.gd3"), (HEAD, "laocai.sxd.gd3")]
    assert engine.org.members("laocai.sxd", ["head"]) == ["laocai.sxd.gd3"]


def test_a_successor_whose_position_has_not_started_is_not_given_a_leavers_tasks(engine,
                                                                                 clock):
    deploy_library(engine)
    admin = as_user(engine, ADMIN)
    case = Case.start(engine, "lao-cai", "proposal", PROPOSER)
    case.do("submit_plan", plan(), by=PROPOSER)
    [task] = case.open("screening")
    engine.orgadmin.save_official(admin, "lao-cai", "laocai.sxd.gd2", full_name="Hoàng Thị Mai")
    engine.orgadmin.add_membership(admin, "lao-cai", "laocai.sxd.gd2", "laocai.sxd", "head",
                                   valid_from=date(2026, 2, 1))
    # chosen by hand: refused, naming the official and their first day; nothing changes
    for act in (lambda: engine.orgadmin.end_membership(
                    admin, "lao-cai", HEAD, "laocai.sxd", "head",
                    reassign={task.id: "laocai.sxd.gd2"}),
                lambda: engine.orgadmin.reassign_tasks(admin, "lao-cai", [task.id],
                                                       "laocai.sxd.gd2")):
        with pytest.raises(InvalidData) as refused:
            act()
        assert refused.value.message_code == "org.successor_not_started"
        assert refused.value.params == {"user": "laocai.sxd.gd2", "day": "01/02/2026"}
        assert "01/02/2026" in refused.value.message
        assert case.candidates(case.open("screening")[0]) == [HEAD]
        assert engine.org.members("laocai.sxd", ["head"]) == [HEAD]
    # by default: the work passes only to someone in office today (here nobody: the other
    # candidates keep the task), never to the head who starts later
    [work] = engine.orgadmin.open_work(admin, "lao-cai", HEAD, "laocai.sxd")
    assert work["successor"] is None
    moved = engine.orgadmin.end_membership(admin, "lao-cai", HEAD, "laocai.sxd", "head")
    assert [m["to"] for m in moved["reassigned"]] == [None]
    assert "laocai.sxd.gd2" not in case.candidates(case.open("screening")[0])
    # from their first day they may take it
    clock.set(local_midnight(date(2026, 2, 1)))
    [done] = engine.orgadmin.reassign_tasks(admin, "lao-cai", [task.id], "laocai.sxd.gd2")
    assert done["to"] == "laocai.sxd.gd2"
