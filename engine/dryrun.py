"""Dry-runs: a procedure played through with scripted decisions, on a throw-away database.

A dry-run script (``<variant folder>/dryrun/*.toml``, see processes/README.md) says who
starts which process when, the choices made at each step (task id → form data, by whom,
when) and what the designer expects (the end event reached, due dates, who gets a step).
:func:`run_script` deploys the variant's definitions and organisation into a fresh SQLite
database in a temporary folder, on a manual engine clock that jumps from one due date to the
next (timers, reminders and escalations fire as the scheduler would fire them), and reports
the path taken, each step's candidates and due date, the documents issued, the
notifications and any incident. Real cases are never touched: the real database is only read
(its deployed definitions and organisation), and the throw-away one is deleted afterwards.
"""
from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select

from .access import Principal
from .clock import LOCAL_TZ, ManualClock, as_utc
from .errors import N_, DefinitionInvalid, EngineError, NotFound, Problem
from .multi_instance import all_tasks
from .store import (Definition, HumanTask, InstanceStatus, Membership, OrgUnit,
                    TaskCandidate, Timer, TimerStatus, User)
from .store.models import Document, Notification

DRYRUN_FOLDER = "dryrun"
# what a script's file or a variant's folder may be named: never a path, nor a name the file
# system refuses
FILE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
SCHEDULER = Principal.system("scheduler")
DATE_FORMAT = "%d/%m/%Y"
TIME_FORMAT = "%d/%m/%Y %H:%M"
# element types of the path the designer reads (SpiffWorkflow's spec class names); the
# engine's own bookkeeping tasks (Start, End, joins it adds) are left out
SHOWN_TYPES = ("UserTask", "ManualTask", "ScriptTask", "ServiceTask", "ExclusiveGateway",
               "ParallelGateway", "InclusiveGateway", "EventBasedGateway", "EndEvent",
               "StartEvent", "BoundaryEvent", "IntermediateCatchEvent",
               "IntermediateThrowEvent", "CallActivity", "SubWorkflowTask",
               "BusinessRuleTask", "SendTask", "ReceiveTask")
MAX_TIMER_ROUNDS = 200
_LAST = datetime.max.replace(tzinfo=LOCAL_TZ)


# scripts ----------------------------------------------------------------------------------
@dataclass
class Step:
    number: int                 # 1-based, as the designer counts them
    task: str                   # the user task's id
    data: dict
    by: str | None = None       # a candidate's username; default: the first candidate
    every: bool = False         # complete every open task of the element (each voter)
    at: datetime | None = None  # move the clock to this local time first
    wait: str | None = None     # "due": let the step run late (past its due date) first


@dataclass
class Script:
    name: str                   # the file's stem
    file: str                   # where it was read from, for messages
    title: str
    process: str
    started_by: str
    starts_at: datetime
    steps: list[Step]
    expect: dict
    start_data: dict = field(default_factory=dict)
    business_key: str | None = None


def parse_local_time(text: str, where: str) -> datetime:
    """'dd/mm/yyyy' or 'dd/mm/yyyy HH:MM', Asia/Ho_Chi_Minh, as UTC."""
    value = str(text).strip()
    for layout in (TIME_FORMAT, DATE_FORMAT):
        try:
            local = datetime.strptime(value, layout)
        except ValueError:
            continue
        if layout == DATE_FORMAT:
            local = local.replace(hour=9)          # a date alone: 09:00, office hours
        return local.replace(tzinfo=LOCAL_TZ).astimezone(LOCAL_TZ)
    raise DefinitionInvalid([Problem(where, f"'{value}' is not a dd/mm/yyyy [HH:MM] time "
                                            "that exists", code="dryrun.bad_time",
                                     params={"value": value})])


def parse_script(text: str, name: str, file: str) -> Script:
    """A script from its TOML text; every problem is named with the file and the field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DefinitionInvalid([Problem(file, f"not TOML: {exc}", code="dryrun.not_toml",
                                         params={"error": str(exc)})]) from None
    return script_from_dict(raw, name, file)


def read_script(folder: Path | str, name: str) -> dict:
    """The TOML table of one script kept with a variant folder (to show or edit it)."""
    path = Path(folder) / DRYRUN_FOLDER / f"{name}.toml"
    if not FILE_NAME.fullmatch(name or "") or not path.is_file():
        raise NotFound(f"no dry-run script '{name}' is kept with the variant",
                       code="dryrun.no_script", params={"script": name})
    return tomllib.loads(path.read_text(encoding="utf-8"))


def script_from_dict(raw: dict, name: str, file: str) -> Script:
    """A script from its table (a TOML file's, or a designer's edit of one)."""
    problems = []

    def need(table: dict, key: str, kind: type, where: str, default: Any = None):
        value = table.get(key, default)
        if value is None or not isinstance(value, kind):
            problems.append(Problem(file, f"{where}{key}: missing or not a "
                                          f"{kind.__name__}", code="dryrun.field",
                                    params={"field": f"{where}{key}"}))
            return kind() if default is None else default
        return value

    process = need(raw, "process", str, "")
    started_by = need(raw, "started_by", str, "")
    starts_text = need(raw, "starts_at", str, "")
    expect = need(raw, "expect", dict, "", {})
    start_data = need(raw, "start_data", dict, "", {})
    steps = []
    for number, spec in enumerate(need(raw, "steps", list, "", []), start=1):
        where = f"steps[{number}]."
        if not isinstance(spec, dict):
            problems.append(Problem(file, f"steps[{number}] is not a table",
                                    code="dryrun.field", params={"field": f"steps[{number}]"}))
            continue
        at = None
        if spec.get("at") is not None:
            try:
                at = parse_local_time(spec["at"], f"{file}: {where}at")
            except DefinitionInvalid as exc:
                problems.extend(exc.problems)
        wait = spec.get("wait")
        if wait not in (None, "due"):
            problems.append(Problem(file, f"{where}wait: only \"due\" is known",
                                    code="dryrun.field", params={"field": f"{where}wait"}))
        steps.append(Step(number, need(spec, "task", str, where), need(spec, "data", dict,
                                                                         where, {}),
                          by=spec.get("by"), every=bool(spec.get("every", False)),
                          at=at, wait=wait))
    starts_at = None
    if starts_text:
        try:
            starts_at = parse_local_time(starts_text, f"{file}: starts_at")
        except DefinitionInvalid as exc:
            problems.extend(exc.problems)
    if problems or starts_at is None:
        raise DefinitionInvalid(problems)
    return Script(name=name, file=file, title=str(raw.get("title") or name), process=process,
                  started_by=started_by, starts_at=starts_at, steps=steps, expect=expect,
                  start_data=start_data, business_key=raw.get("business_key"))


def load_scripts(folder: Path | str) -> list[Script]:
    """The dry-run scripts kept with a variant folder (``dryrun/*.toml``), by name."""
    directory = Path(folder) / DRYRUN_FOLDER
    if not directory.is_dir():
        return []
    return [parse_script(path.read_text(encoding="utf-8"), path.stem,
                         f"{Path(folder).name}/{DRYRUN_FOLDER}/{path.name}")
            for path in sorted(directory.glob("*.toml"))]


def recorded_script(engine, instance_id: str) -> dict:
    """A script's table that replays a case as it went: who completed each step, when, with
    the data they entered (the changes the audit log recorded), expecting the stage it
    reached. The caller checks who may read the case."""
    from .store import AuditEvent
    instance = engine.runtime.get(instance_id)
    with engine.db.reading() as session:
        events = list(session.scalars(select(AuditEvent).where(
            AuditEvent.instance_id == instance_id, AuditEvent.action == "task_completed")
            .order_by(AuditEvent.id)))
    steps = []
    for event in events:
        changed = (event.details or {}).get("changed") or {}
        steps.append({"task": event.element_id, "by": event.actor, "at": local_time(event.at),
                      "data": {name: value.get("after") for name, value in changed.items()
                               if isinstance(value, dict)}})
    expect = {"stage": instance.stage} if instance.stage else {}
    return {"title": instance.business_key or instance.id, "process": instance.definition_key,
            "started_by": instance.started_by, "starts_at": local_time(instance.started_at),
            "steps": steps, "expect": expect}


# results ----------------------------------------------------------------------------------
@dataclass
class Person:
    username: str
    full_name: str
    positions: list[tuple[str, str]]     # (position, unit name)

    def to_dict(self) -> dict:
        return {"username": self.username, "full_name": self.full_name,
                "positions": [{"position": p, "unit": u} for p, u in self.positions]}


@dataclass
class Finding:
    """A failed expectation or an incident, named by step and element."""
    code: str
    message: str
    step: int | None = None
    element_id: str | None = None
    element_name: str | None = None
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "step": self.step,
                "element_id": self.element_id, "element_name": self.element_name,
                "params": self.params}


@dataclass
class Result:
    script: str
    file: str
    title: str
    variant: str
    process: str
    path: list[dict] = field(default_factory=list)
    tasks: list[dict] = field(default_factory=list)
    documents: list[dict] = field(default_factory=list)
    notifications: list[dict] = field(default_factory=list)
    incidents: list[Finding] = field(default_factory=list)
    failures: list[Finding] = field(default_factory=list)
    end: str | None = None
    end_name: str | None = None
    final_status: str | None = None    # the case's, when the run ended (not a status write)
    stage: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures and not self.incidents

    def problems(self) -> list[str]:
        """One line per failure or incident, naming the script, the step and the element."""
        lines = []
        for finding in [*self.incidents, *self.failures]:
            where = self.file
            if finding.step:
                where += f", step {finding.step}"
            if finding.element_id:
                where += f" [{finding.element_id}]"
            lines.append(f"{where}: {finding.message}")
        return lines

    def to_dict(self) -> dict:
        return {"script": self.script, "file": self.file, "title": self.title,
                "variant": self.variant, "process": self.process, "passed": self.passed,
                "status": self.final_status, "stage": self.stage, "end": self.end,
                "end_name": self.end_name, "path": self.path, "tasks": self.tasks,
                "documents": self.documents, "notifications": self.notifications,
                "incidents": [f.to_dict() for f in self.incidents],
                "failures": [f.to_dict() for f in self.failures]}


def local_date(value: datetime | None) -> str | None:
    return as_utc(value).astimezone(LOCAL_TZ).strftime(DATE_FORMAT) if value else None


def local_time(value: datetime | None) -> str | None:
    return as_utc(value).astimezone(LOCAL_TZ).strftime(TIME_FORMAT) if value else None


# the throw-away engine ---------------------------------------------------------------------
@contextmanager
def scratch_engine(start: datetime) -> Iterator[Any]:
    """A migrated engine on a new SQLite file in a temporary folder and a manual clock at
    ``start``; the folder is removed afterwards."""
    from .workflow_engine import WorkflowEngine
    # in memory where the system has a RAM disk: nothing of a dry-run needs to last
    shm = Path("/dev/shm")
    folder = tempfile.mkdtemp(prefix="nd73-dryrun-", dir=shm if shm.is_dir() else None)
    engine = None
    try:
        engine = WorkflowEngine(f"sqlite:///{folder}/dryrun.sqlite3",
                                clock=ManualClock(start))
        engine.upgrade_database()
        yield engine
    finally:
        if engine is not None:
            engine.close()
        shutil.rmtree(folder, ignore_errors=True)


def load_folder(folder: Path | str, forms_dir: Path | str | None = None
                ) -> Callable[[Any], str]:
    """A loader that deploys a variant folder and seeds its organisation (``org.toml``)."""
    from .variants import load_variant

    def load(engine) -> str:
        variant = load_variant(folder)
        engine.repository.deploy_folder(folder, "dryrun", forms_dir)
        engine.org.seed(variant.name, variant.org, secrets.token_urlsafe(24))
        return variant.name
    return load


def load_deployed(real, variant: str) -> Callable[[Any], str]:
    """A loader that copies the newest deployed definitions of ``variant`` and its
    organisation (units, their members, no passwords) from the real engine ``real``."""
    def load(engine) -> str:
        return _copy(real, engine, variant, real.repository.latest_versions(variant))
    return load


def load_draft(real, variant: str, inputs) -> Callable[[Any], str]:
    """A loader that deploys a draft's folder (``engine.drafts.FolderInputs``, not deployed
    for real) over a copy of the variant's deployed definitions and its organisation, so the
    scripts play what deploying the draft would put in place."""
    def load(engine) -> str:
        _copy(real, engine, variant, real.repository.latest_versions(variant))
        engine.repository.deploy(variant, inputs.sources, "dryrun", forms=inputs.forms,
                                 settings=inputs.settings, templates=inputs.templates,
                                 documents=inputs.documents)
        return variant
    return load


def _copy(real, engine, variant: str, definitions) -> str:
    """Copy ``definitions`` and the organisation of ``variant`` from ``real`` to ``engine``."""
    with real.db.reading() as session:
        units = list(session.scalars(select(OrgUnit).where(OrgUnit.variant == variant)))
        ids = [u.id for u in units]
        memberships = list(session.scalars(select(Membership).where(
            Membership.unit_id.in_(ids)))) if ids else []
        names = sorted({m.username for m in memberships})
        users = list(session.scalars(select(User).where(User.username.in_(names)))) \
            if names else []
    with engine.db.transaction() as session:
        for row in definitions:
            session.add(Definition(variant=row.variant, key=row.key, name=row.name,
                                   version=row.version, content_hash=row.content_hash,
                                   sources=dict(row.sources), spec=row.spec,
                                   deployed_at=row.deployed_at,
                                   deployed_by=row.deployed_by))
        pending = {u.id: u for u in units}
        while pending:                       # parents first
            for unit in [u for u in pending.values()
                         if u.parent_id not in pending]:
                session.add(OrgUnit(id=unit.id, variant=unit.variant, name=unit.name,
                                    parent_id=unit.parent_id, kind=unit.kind,
                                    tags=list(unit.tags or [])))
                del pending[unit.id]
            session.flush()
        for user in users:
            session.add(User(username=user.username, full_name=user.full_name,
                             password_hash="!", active=user.active, email=user.email,
                             notification_mode=user.notification_mode))
        session.flush()
        for held in memberships:
            session.add(Membership(username=held.username, unit_id=held.unit_id,
                                   position=held.position, valid_from=held.valid_from,
                                   valid_to=held.valid_to))
    engine.org.invalidate()
    return variant


def run_script(script: Script, load: Callable[[Any], str]) -> Result:
    """Play ``script`` on a throw-away engine that ``load`` fills; never raises for what
    the procedure does (incidents and failed expectations are in the result)."""
    with scratch_engine(script.starts_at) as engine:
        variant = load(engine)
        return _Run(engine, script, variant).play()


class _Run:
    def __init__(self, engine, script: Script, variant: str):
        self.engine = engine
        self.script = script
        self.result = Result(script.name, script.file, script.title, variant, script.process)
        self.instance_id: str | None = None
        self.step_number: int | None = None     # the step being played (an incident's cause)
        self.names: dict[str, str] = {}

    # the clock ---------------------------------------------------------------------------
    def _next_timer(self) -> Timer | None:
        with self.engine.db.reading() as session:
            return session.scalars(select(Timer).where(
                Timer.status == TimerStatus.PENDING, Timer.instance_id == self.instance_id)
                .order_by(Timer.due_at).limit(1)).first()

    def move_to(self, target: datetime) -> None:
        """Jump from one due timer to the next up to ``target``, firing each."""
        clock = self.engine.clock
        for _ in range(MAX_TIMER_ROUNDS):
            timer = self._next_timer()
            if timer is None or as_utc(timer.due_at) > target:
                break
            due = as_utc(timer.due_at)
            if due > clock.now():
                clock.set(due)
            self.engine.runtime.fire_timers(self.instance_id, principal=SCHEDULER)
            if self._incident():
                return
        if target > clock.now():
            clock.set(target)

    # the steps ---------------------------------------------------------------------------
    def _incident(self) -> bool:
        instance = self.engine.runtime.get(self.instance_id)
        if instance.status != InstanceStatus.INCIDENT:
            return False
        if not self.result.incidents:
            element = instance.incident_element
            self.result.incidents.append(Finding(
                N_("dryrun.incident"), f"incident: {instance.incident_message}",
                step=self.step_number, element_id=element,
                element_name=self.names.get(element or "", element),
                params={"error": instance.incident_message}))
        return True

    def _candidates(self, task: HumanTask) -> list[str]:
        with self.engine.db.reading() as session:
            return sorted(session.scalars(select(TaskCandidate.username)
                                          .where(TaskCandidate.task_id == task.id)))

    def _named(self, element: str) -> str:
        """An element as the designer knows it: its name, and its id when they differ."""
        name = self.names.get(element)
        return f"{name} ({element})" if name and name != element else element

    def _fail(self, step: Step | int | None, code: str, message: str,
              element_id: str | None = None, **params) -> None:
        number = step.number if isinstance(step, Step) else step
        self.result.failures.append(Finding(code, message, number, element_id,
                                            self.names.get(element_id or ""), params))

    def play(self) -> Result:
        from .diagrams import element_names
        script, engine = self.script, self.engine
        try:
            definition = engine.repository.latest(self.result.variant, script.process)
        except EngineError as exc:
            self._fail(None, N_("dryrun.no_process"), exc.message, process=script.process)
            return self.result
        for text in definition.sources.values():
            if text.lstrip().startswith("<?xml") or "<bpmn:definitions" in text[:2000]:
                try:
                    self.names.update(element_names(text))
                except Exception:       # noqa: BLE001 - names are a nicety
                    pass
        starter = engine.access.principal(script.started_by)
        if starter is None:
            self._fail(None, N_("dryrun.no_user"), f"started_by: no official "
                       f"'{script.started_by}' in the organisation", user=script.started_by)
            return self.result
        try:
            instance = engine.runtime.start(self.result.variant, script.process,
                                            principal=starter, data=dict(script.start_data),
                                            business_key=script.business_key)
        except EngineError as exc:
            self._fail(None, N_("dryrun.start_refused"), f"the start was refused: {exc.message}",
                       error=exc.message)
            return self.result
        self.instance_id = instance.id
        for step in script.steps:
            if self._incident() or not self._step(step):
                break
        self._incident()
        self._report()
        if not self.result.failures and not self.result.incidents:
            # a step that failed already says why the rest went otherwise
            self._check_expectations()
        return self.result

    def _step(self, step: Step) -> bool:
        engine = self.engine
        self.step_number = step.number
        if step.at is not None:
            if step.at < engine.clock.now():
                self._fail(step, N_("dryrun.time_backwards"), f"at {local_time(step.at)} is "
                           "before the step before it", step.task, at=local_time(step.at))
                return False
            self.move_to(step.at)
        tasks = [t for t in engine.runtime.open_tasks(self.instance_id)
                 if t.element_id == step.task]
        if not tasks:
            self.move_to(engine.clock.now())
            open_now = sorted(t.element_id for t in engine.runtime.open_tasks(self.instance_id))
            self._fail(step, N_("dryrun.not_open"), f"{step.task} is not open (open: "
                       f"{', '.join(open_now) or 'none'})", step.task,
                       element=step.task, open=", ".join(open_now) or "-")
            return False
        if step.wait == "due":
            due = max((as_utc(t.due_at) for t in tasks if t.due_at), default=None)
            if due is not None:
                self.move_to(due + timedelta(minutes=1))
                if self._incident():
                    return False
                tasks = [t for t in engine.runtime.open_tasks(self.instance_id)
                         if t.element_id == step.task]
        if step.by and not step.every:      # the task of that official (one per voter)
            tasks = [t for t in tasks if step.by in self._candidates(t)] or tasks[:1]
        for task in tasks if step.every else tasks[:1]:
            candidates = self._candidates(task)
            if not candidates:
                self.result.incidents.append(Finding(
                    N_("dryrun.nobody"), f"nobody can do {step.task}: the lane resolves to no "
                    "official", step.number, step.task, self.names.get(step.task),
                    {"element": self._named(step.task)}))
                return False
            by = step.by if step.by and not step.every else candidates[0]
            if by not in candidates:
                self._fail(step, N_("dryrun.not_candidate"), f"{by} is not among those who get "
                           f"{step.task} ({', '.join(candidates)})", step.task, user=by,
                           element=self._named(step.task),
                           candidates=", ".join(candidates))
                return False
            try:
                engine.runtime.complete_task(task.id, dict(step.data),
                                             principal=engine.access.principal(by))
            except EngineError as exc:
                errors = (exc.details or {}).get("errors") or []
                detail = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors
                                   if isinstance(e, dict)) or exc.message
                self._fail(step, N_("dryrun.refused"), f"the step was refused: {detail}",
                           step.task, error=detail)
                return False
        self.move_to(engine.clock.now())      # what came due on the way
        return True

    # the report --------------------------------------------------------------------------
    def _people(self, usernames: list[str]) -> list[dict]:
        if not usernames:
            return []
        with self.engine.db.reading() as session:
            users = {u.username: u for u in session.scalars(
                select(User).where(User.username.in_(usernames)))}
            units = {u.id: u.name for u in session.scalars(select(OrgUnit))}
            held: dict[str, list] = {}
            for row in session.scalars(select(Membership).where(
                    Membership.username.in_(usernames)).order_by(Membership.id)):
                held.setdefault(row.username, []).append((row.position,
                                                          units.get(row.unit_id, "")))
        return [Person(name, users[name].full_name if name in users else name,
                       held.get(name, [])).to_dict() for name in usernames]

    def _report(self) -> None:
        engine, result = self.engine, self.result
        workflow = engine.runtime.workflow(self.instance_id)
        done = [t for t in all_tasks(workflow) if t.has_state(TaskState.COMPLETED)]
        done.sort(key=lambda t: t.last_state_change)
        for task in done:
            spec = task.task_spec
            kind = type(spec).__name__
            element = spec.name.removesuffix(" [child]")   # a multi-instance task's rounds
            name = getattr(spec, "bpmn_name", None) or self.names.get(element)
            unnamed_join = kind.endswith("Gateway") and name in (None, element)
            repeated = result.path and result.path[-1]["element_id"] == element
            if kind not in SHOWN_TYPES or unnamed_join or repeated:
                continue
            result.path.append({"element_id": element, "type": kind, "name": name or element})
        with engine.db.reading() as session:
            tasks = sorted(session.scalars(select(HumanTask).where(
                HumanTask.instance_id == self.instance_id)),
                key=lambda t: (as_utc(t.created_at), as_utc(t.completed_at or _LAST)))
            candidates: dict[str, list[str]] = {}
            for row in session.scalars(select(TaskCandidate).where(
                    TaskCandidate.instance_id == self.instance_id)):
                candidates.setdefault(row.task_id, []).append(row.username)
            documents = list(session.scalars(select(Document).where(
                Document.instance_id == self.instance_id).order_by(Document.issued_at)))
            units = {u.id: u.name for u in session.scalars(select(OrgUnit))}
            notes = list(session.scalars(select(Notification).where(
                Notification.instance_id == self.instance_id).order_by(Notification.id)))
        for task in tasks:
            result.tasks.append({
                "element_id": task.element_id, "name": task.name or task.element_id,
                "status": str(task.status), "created": local_time(task.created_at),
                "due": local_date(task.due_at), "due_at": local_time(task.due_at),
                "completed": local_time(task.completed_at),
                "completed_by": self._people([task.completed_by])[0]
                if task.completed_by else None,
                "candidates": self._people(sorted(candidates.get(task.id, [])))})
        for document in documents:
            result.documents.append({
                "kind": document.kind, "reference": document.reference,
                "title": document.title, "agency": units.get(document.agency_id,
                                                             document.agency_id),
                "element_id": document.element_id, "issued": local_date(document.issued_at)})
        full_names = {p["username"]: p["full_name"]
                      for p in self._people(sorted({n.username for n in notes}))}
        for note in notes:
            result.notifications.append({
                "kind": note.kind, "to": full_names.get(note.username, note.username),
                "username": note.username, "title": note.title,
                "at": local_time(note.created_at)})
        instance = engine.runtime.get(self.instance_id)
        result.final_status, result.stage = str(instance.status), instance.stage
        ends = [p for p in result.path if p["type"] == "EndEvent"]
        if instance.status == InstanceStatus.COMPLETED and ends:
            result.end, result.end_name = ends[-1]["element_id"], ends[-1]["name"]

    def _check_expectations(self) -> None:
        expect, result = self.script.expect, self.result
        if "end" in expect and expect["end"] != result.end:
            self._fail(None, N_("dryrun.expected_end"), f"expected to end at {expect['end']}, "
                       f"ended at {result.end or 'no end event'} (status {result.final_status})",
                       expect["end"], expected=expect["end"], actual=result.end or "-")
        for key, got in (("stage", result.stage), ("status", result.final_status)):
            if key in expect and expect[key] != got:
                self._fail(None, N_("dryrun.expected_value"), f"expected {key} {expect[key]}, "
                           f"got {got}", None, key=key, expected=expect[key], actual=got or "-")
        steps = {s.task: s.number for s in self.script.steps}
        for element, wanted in (expect.get("due") or {}).items():
            found = [t["due"] for t in result.tasks if t["element_id"] == element]
            if str(wanted) not in found:
                self._fail(steps.get(element), N_("dryrun.expected_due"),
                           f"{element}: expected due {wanted}, got "
                           f"{', '.join(d or '-' for d in found) or 'the step never opened'}",
                           element, element=self._named(element), expected=str(wanted),
                           actual=", ".join(d or "-" for d in found) or "-")
        for element, wanted in (expect.get("candidates") or {}).items():
            wanted = sorted([wanted] if isinstance(wanted, str) else wanted)
            found = sorted({p["username"] for t in result.tasks if t["element_id"] == element
                            for p in t["candidates"]})
            if found != wanted:
                self._fail(steps.get(element), N_("dryrun.expected_candidates"),
                           f"{element}: expected {', '.join(wanted)}, got "
                           f"{', '.join(found) or 'nobody'}", element,
                           element=self._named(element), expected=", ".join(wanted),
                           actual=", ".join(found) or "-")
        kinds = sorted(d["kind"] for d in result.documents)
        if "documents" in expect and sorted(expect["documents"]) != kinds:
            self._fail(None, N_("dryrun.expected_documents"), f"expected documents "
                       f"{', '.join(sorted(expect['documents'])) or 'none'}, issued "
                       f"{', '.join(kinds) or 'none'}", None,
                       expected=", ".join(sorted(expect["documents"])) or "-",
                       actual=", ".join(kinds) or "-")
