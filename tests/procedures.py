"""Helpers that drive the Decree 73 procedures the way officials do: each step completed by
one of the users its lane resolves to, with the data its form asks for, as that user (the
engine checks their rights as for anyone)."""
from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from engine.access import Principal
from engine.clock import LOCAL_TZ
from engine.demo import demo_plan, seed_orgs
from engine.store import AuditEvent, Decision, HumanTask, TaskCandidate

from conftest import PROJECT

VARIANTS = ("national", "dak-lak", "can-tho", "lao-cai")
PREFIX = {"national": "mau", "dak-lak": "daklak", "can-tho": "cantho", "lao-cai": "laocai"}


def deploy_library(engine, *, ballots: bool = False) -> None:
    """Deploy every variant and seed their organisations. ``ballots``: the collective
    leadership and the evaluation council vote with online ballots, one task per member, as a
    province may choose (``[meetings] leadership = "ballots"``, ``council = "ballots"``),
    instead of the meetings their chair or secretary records."""
    folder = PROJECT / "processes"
    if ballots:
        folder = Path(tempfile.mkdtemp(prefix="nd73-ballots-")) / "processes"
        shutil.copytree(PROJECT / "processes", folder)
        national = folder / "national" / "variant.toml"
        settings = national.read_text(encoding="utf-8")
        assert 'leadership = "meeting"' in settings and 'council = "meeting"' in settings
        national.write_text(settings.replace('leadership = "meeting"', 'leadership = "ballots"')
                            .replace('council = "meeting"', 'council = "ballots"'),
                            encoding="utf-8")
    for variant in VARIANTS:
        engine.repository.deploy_folder(folder / variant, "ci", PROJECT / "forms")
    seed_orgs(engine, PROJECT / "processes")
    if ballots:
        shutil.rmtree(folder.parent, ignore_errors=True)


def as_user(engine, username: str) -> Principal:
    """The principal of a seeded user, as the API and the web app build it at sign-in."""
    principal = engine.access.principal(username)
    assert principal is not None, f"no active user {username}"
    return principal


# the screener's own finding on each condition of Art. 5 k.1 (here: all met), recorded at
# screening instead of trusting the proposer's ticks
SCREENED = {f"condition_{name}": "met" for name in (
    "bottleneck", "common_interest", "urgent_need", "no_harm", "no_local_harm")}


def plan(title: str = "Số hoá hồ sơ cấp phép xây dựng", **changes) -> dict:
    return {**demo_plan(PROJECT / "processes", title), **changes}


class Case:
    """One running instance, driven step by step."""

    def __init__(self, engine, instance):
        self.engine = engine
        self.id = instance.id
        self.business_key = instance.business_key

    @classmethod
    def start(cls, engine, variant, key, proposer: str | Principal, data=None,
              business_key=None):
        """Start as ``proposer``: a user's name (started as that user), or a principal (a
        scheduled cycle is started as :meth:`Principal.system`, as the scheduler would)."""
        principal = proposer if isinstance(proposer, Principal) else as_user(engine, proposer)
        return cls(engine, engine.runtime.start(variant, key, principal=principal,
                                                data=data or {}, business_key=business_key))

    @property
    def instance(self):
        return self.engine.runtime.get(self.id)

    def open(self, element_id: str | None = None) -> list[HumanTask]:
        tasks = self.engine.runtime.open_tasks(self.id)
        found = [t for t in tasks if element_id is None or t.element_id == element_id]
        instance = self.instance
        assert instance.status != "incident", (
            f"incident at {instance.incident_element}: {instance.incident_message}")
        return found

    def open_elements(self) -> list[str]:
        return sorted(t.element_id for t in self.open())

    def candidates(self, task: HumanTask) -> list[str]:
        with self.engine.db.reading() as session:
            return sorted(session.scalars(select(TaskCandidate.username)
                                          .where(TaskCandidate.task_id == task.id)))

    def do(self, element_id: str, data: dict | None = None, *, by: str | None = None) -> str:
        """Complete the open task of ``element_id`` as ``by`` (checked to be a candidate)."""
        tasks = self.open(element_id)
        assert tasks, f"{element_id} is not open; open: {self.open_elements()}"
        if by is not None:
            task = next((t for t in tasks if by in self.candidates(t)), None)
            assert task is not None, (f"{by} is not a candidate of {element_id}: "
                                      f"{[self.candidates(t) for t in tasks]}")
        else:
            task = tasks[0]
            by = self.candidates(task)[0]
        self.engine.runtime.complete_task(task.id, data or {},
                                          principal=as_user(self.engine, by))
        return by

    def vote(self, ballots: dict[str, str], element_id: str = "leadership_vote") -> None:
        """Each member's vote: at the leadership meeting the chair records (Art. 8 k.1) or the
        council's meeting its chair or secretary records (Art. 8 k.2), the members given
        present, or, with online ballots, each in their own task."""
        today = self.engine.clock.now().astimezone(LOCAL_TZ).date().isoformat()  # not future
        if element_id == "leadership_vote" and self.open("leadership_meeting"):
            self.do("leadership_meeting", leadership_meeting(ballots, today))
            return
        if element_id == "council_vote" and self.open("council_meeting"):
            self.do("council_meeting", council_meeting(ballots, today))
            return
        for voter, vote in ballots.items():
            self.do(element_id, {"vote": vote, **({"council_opinion": "Ý kiến"}
                                                    if element_id == "council_vote" else {})},
                    by=voter)

    def voters(self, element_id: str = "leadership_vote") -> list[str]:
        if element_id == "leadership_vote" and self.open("leadership_meeting"):
            return sorted(self.data()["voters"])
        if element_id == "council_vote" and self.open("council_meeting"):
            return sorted(set(self.data()["council_members"]))
        return sorted(c for t in self.open(element_id) for c in self.candidates(t))

    def data(self) -> dict:
        workflow = self.engine.runtime.workflow(self.id)
        merged: dict = {}
        for task in workflow.get_tasks():
            merged.update(task.data)
        merged.update(workflow.data)
        return merged

    def decisions(self) -> list[tuple[str, str, str]]:
        with self.engine.db.reading() as session:
            return [(d.field, d.value, d.actor) for d in session.scalars(
                select(Decision).where(Decision.instance_id == self.id).order_by(Decision.id))]

    def audit(self, action: str) -> list[AuditEvent]:
        with self.engine.db.reading() as session:
            return list(session.scalars(select(AuditEvent).where(
                AuditEvent.instance_id == self.id, AuditEvent.action == action)
                .order_by(AuditEvent.id)))

    def send(self, message: str, payload: dict | None = None, by: str = "system") -> None:
        """A message from outside (a portal: the system)."""
        self.engine.runtime.send_message(message, payload or {},
                                         principal=Principal.system(by),
                                         correlation_key=self.business_key)


def leadership_meeting(ballots: dict[str, str], date: str, opinion: str | None = None) -> dict:
    """The record of a leadership meeting (Art. 8 k.1): the members given are present and
    vote as given (with ``opinion``, each gives one); the others are absent."""
    return {"meeting_date": date, "meeting_attendees": list(ballots),
            "meeting_votes": [{"member": m, "vote": v,
                               **({"opinion": f"{opinion} của {m}"} if opinion else {})}
                              for m, v in ballots.items()]}


def council_meeting(ballots: dict[str, str], date: str, opinion: str = "Ý kiến") -> dict:
    """The record of the evaluation council's meeting (Art. 8 k.2): the members given are
    present, each with an opinion and their vote; the others are absent."""
    return {"council_meeting_date": date, "council_attendees": list(ballots),
            "council_opinions": [{"member": m, "vote": v, "opinion": f"{opinion} của {m}"}
                                 for m, v in ballots.items()]}


def to_decision(engine, variant, proposer, *, complex_=False, business_key="DX-1",
                **plan_changes) -> Case:
    """Start a proposal (``plan_changes``: fields of its plan) and bring it to the leadership
    vote."""
    case = Case.start(engine, variant, "proposal", proposer, business_key=business_key)
    case.do("submit_plan", plan(**plan_changes), by=proposer)
    if case.open("home_affairs_review"):
        case.do("home_affairs_review", {"dossier_complete": True, "review_note": "Trình"})
    case.do("screening", {**SCREENED, "is_complex": complex_})
    case.do("party_opinion", {"party_opinion": "agree"})
    return case


def on_day(engine, day: str) -> None:
    """Move the engine clock to the morning of ``day`` (an ISO date, in Asia/Ho_Chi_Minh) when
    it stands before it: work is reported done, and meetings recorded, once they happened."""
    instant = datetime.fromisoformat(day).replace(hour=9, tzinfo=LOCAL_TZ)
    if engine.clock.now() < instant:
        engine.clock.set(instant)


def implement_and_evaluate(case: Case, outcome: str, proposer: str,
                           finished_on: str = "2027-06-30") -> None:
    on_day(case.engine, finished_on)
    case.do("implement", {"finished_on": finished_on}, by=proposer)
    case.do("report_completion", {"result_summary": "Đã triển khai"}, by=proposer)
    case.do("party_evaluation_opinion", {"party_opinion": "agree"})
    # the leadership meets the day the work is reported done (a meeting date is never
    # later than today)
    case.do("evaluate", evaluation_meeting(case, outcome, finished_on))
    case.do("notify_result", {})


def evaluation_meeting(case: Case, outcome: str, meeting_date: str = "2027-06-30") -> dict:
    """The record of the leadership meeting that evaluates the results (Art. 9): every member
    present, each member's assessment, the conclusion and, when not completed, its causes."""
    members = case.data()["evaluation_members"]
    record = {"meeting_date": meeting_date, "attendees": members,
              "member_assessments": [{"member": m, "assessment": outcome} for m in members],
              "outcome": outcome, "evaluation_note": "Đánh giá"}
    if outcome != "completed":
        record |= {"objective_causes": "Giá vật liệu tăng", "subjective_causes": "Chậm triển khai"}
    return record
