"""A case's file (hồ sơ) so far, as its readers see it: what each completed step recorded,
with who (full name, position, unit) and when, the ballots of each collective step and
their counts, the steps open now with their deadline and legal basis.

Everything comes from what the procedure declares, never from names the engine knows:

- the case's title is the value of the form field its forms mark ``"x-case-title": true``
  (else the business key, else the process's name and a short id);
- each step is shown with its form's JSON Schema: the schema's and the fields' ``title``
  (``x-title-en`` in English), their ``x-enum-labels``, ``format`` (``date``: dd/mm/yyyy)
  and ``x-widget`` (``money``: đồng); an array of ``{name, file_id}`` items is a list of
  attachments;
- the completions of a multi-instance user task are one collective step (kind
  ``collective``, its ``members``): each one's declared decision fields
  (``decisionFields``) are counted;
- lanes are named by the variant's ``[roles]`` ``label`` (``label_en``), elements by their
  BPMN name, stages by the variant's ``[stages]``; a step's legal basis is its
  ``legalBasis`` property.

The web pages, the REST API and the PDF download all show this one structure."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Iterable

from sqlalchemy import select
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import LoopTask
from SpiffWorkflow.exceptions import TaskNotFoundException
from SpiffWorkflow.util.task import TaskState

from . import diagrams, policy
from .access import Access, Principal
from .clock import LOCAL_TZ, as_utc
from .forms import is_person, is_unit, person_values, unit_values
from .multi_instance import all_tasks
from .store import (AuditEvent, Database, Definition, HumanTask, Instance, Membership,
                    OrgUnit, TaskCandidate, TaskStatus, User)
from .store.models import Document as IssuedDocument

TITLE_MARK = "x-case-title"


# --- words and numbers as a Vietnamese reader expects them ----------------------------------

def money_text(value: Any) -> str:
    """450000000 → ``450.000.000 đồng``."""
    try:
        amount = int(value)
    except (TypeError, ValueError):
        return str(value)
    sign = "-" if amount < 0 else ""
    return f"{sign}{abs(amount):,}".replace(",", ".") + " đồng"


def date_text(value: Any) -> str:
    """An ISO date (or a datetime, read in Asia/Ho_Chi_Minh) as dd/mm/yyyy."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        return as_utc(value).astimezone(LOCAL_TZ).strftime("%d/%m/%Y")
    if isinstance(value, date):
        return value.strftime("%d/%m/%Y")
    text = str(value)
    try:
        if len(text) > 10:
            return datetime_text(datetime.fromisoformat(text))
        return date.fromisoformat(text).strftime("%d/%m/%Y")
    except ValueError:
        return text


def datetime_text(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = as_utc(value)
    return value.astimezone(LOCAL_TZ).strftime("%d/%m/%Y %H:%M")


def iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value is not None else None


# --- what the procedure declares --------------------------------------------------------------

def forms_of(definition: Definition) -> dict[str, dict]:
    """The definition's deployed forms by file name (``proposal_plan.schema.json``)."""
    found = {}
    for name, text in (definition.sources or {}).items():
        if name.endswith(".json"):
            try:
                found[name.rsplit("/", 1)[-1]] = json.loads(text)
            except ValueError:
                continue
    return found


def title_fields(definition: Definition) -> tuple[str, ...]:
    """The form fields a definition's forms mark as the case's title."""
    names: dict[str, None] = {}
    for schema in forms_of(definition).values():
        for field, prop in (schema.get("properties") or {}).items():
            if isinstance(prop, dict) and prop.get(TITLE_MARK) is True:
                names[field] = None
    return tuple(names)


def _title_from(fields: tuple[str, ...], data: dict) -> str | None:
    for field in fields:
        value = data.get(field)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def case_titles(db: Database, instance_ids: Iterable[str]) -> dict[str, str]:
    """A readable name per case, for lists: the title field its forms declare, as the last
    completed step recorded it (read from the audit log, no workflow is loaded), else its
    business key, else its process's name and short id."""
    wanted = set(instance_ids)
    if not wanted:
        return {}
    with db.reading() as session:
        rows = session.execute(select(Instance.id, Instance.business_key, Definition)
                               .join(Definition, Definition.id == Instance.definition_id)
                               .where(Instance.id.in_(wanted))).all()
        fields = {i: title_fields(d) for i, _, d in rows}
        titled: dict[str, str] = {}
        if any(fields.values()):
            events = session.execute(
                select(AuditEvent.instance_id, AuditEvent.details)
                .where(AuditEvent.instance_id.in_([i for i, f in fields.items() if f]),
                       AuditEvent.action.in_(("task_completed", "instance_started")))
                .order_by(AuditEvent.id)).all()
            for instance_id, details in events:
                details = details if isinstance(details, dict) else {}
                changed = details.get("changed") or {}
                after = {k: (v or {}).get("after") for k, v in changed.items()
                         if isinstance(v, dict)}
                if isinstance(details.get("data"), dict):      # the start's data
                    after.update(details["data"])
                found = _title_from(fields[instance_id], after)
                if found:
                    titled[instance_id] = found
    return {i: titled.get(i) or key or f"{d.name or d.key} · {i[:8]}" for i, key, d in rows}


def position_code(position: str) -> tuple[str, str]:
    return position, position


@dataclass
class People:
    """Users as pages show them: full name, positions and units. ``position_words`` gives a
    position's (Vietnamese, English) words; the application sets it from its catalogues
    (the engine keeps no words of its own: without them a position is shown by its code)."""
    db: Database
    position_words: Callable[[str], tuple[str, str]] = position_code

    def of(self, usernames: Iterable[str | None]) -> dict[str, dict]:
        wanted = {u for u in usernames if u}
        if not wanted:
            return {}
        with self.db.reading() as session:
            names = dict(session.execute(select(User.username, User.full_name)
                                         .where(User.username.in_(wanted))).all())
            held = session.execute(select(Membership.username, Membership.position,
                                          OrgUnit.id, OrgUnit.name)
                                   .join(OrgUnit, OrgUnit.id == Membership.unit_id)
                                   .where(Membership.username.in_(wanted))
                                   .order_by(Membership.id)).all()
        people: dict[str, dict[str, Any]] = {
            u: {"username": u, "full_name": names.get(u) or u, "positions": []} for u in wanted}
        for username, position, unit_id, unit_name in held:
            vi, en = self.position_words(position)
            people[username]["positions"].append({"position": position, "label": vi,
                                                  "label_en": en, "unit_id": unit_id,
                                                  "unit": unit_name})
        for person in people.values():
            person["text"] = person_text(person)
        return people


def person_text(person: dict) -> str:
    """``Nguyễn Văn A (Người đứng đầu, Sở Xây dựng)``."""
    held = person.get("positions") or []
    if not held:
        return person["full_name"]
    first = held[0]
    return f"{person['full_name']} ({first['label']}, {first['unit']})"


# --- the dossier ------------------------------------------------------------------------------

def _files(value: Any) -> list[dict] | None:
    """A list of attachments (``{name, file_id}`` items), else None."""
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(v, dict) and v.get("file_id") for v in value):
        return [{"name": str(v.get("name") or v["file_id"]), "file_id": str(v["file_id"])}
                for v in value]
    return None


def field_text(prop: dict, value: Any, people: dict[str, dict],
               units: dict[str, str] | None = None) -> tuple[str, str]:
    """How a value reads, and its kind (for pages): money in đồng, dates dd/mm/yyyy,
    choices by their labels, yes/no, people and units by name, a list's rows one by one."""
    labels = prop.get("x-enum-labels") or {}
    units = units or {}
    if isinstance(value, bool):
        return ("Có" if value else "Không"), "boolean"
    if prop.get("x-widget") == "money":
        return money_text(value), "money"
    if prop.get("format") == "date":
        return date_text(value), "date"
    if prop.get("format") == "date-time":
        return date_text(value), "datetime"
    items: dict = prop["items"] if isinstance(prop.get("items"), dict) else {}
    names_people = is_person(prop) or is_person(items)
    names_units = is_unit(prop) or is_unit(items)
    if isinstance(value, list):
        item_labels = items.get("x-enum-labels") or labels
        shown = [people[v]["text"] if names_people and isinstance(v, str) and v in people
                 else units[v] if names_units and isinstance(v, str) and v in units
                 else item_labels.get(v, v) if isinstance(v, str)
                 else _row_text(items, v, people, units) if isinstance(v, dict)
                 else json.dumps(v, ensure_ascii=False) for v in value]
        return "; ".join(str(s) for s in shown), "list"
    if isinstance(value, str) and value in labels:
        return labels[value], "choice"
    if names_people and isinstance(value, str) and value in people:
        return people[value]["text"], "person"
    if names_units and isinstance(value, str) and value in units:
        return units[value], "unit"
    if isinstance(value, (int, float)):
        return f"{value:,}".replace(",", "."), "number"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False), "object"
    return str(value), "textarea" if prop.get("x-widget") == "textarea" else "text"


def _row_text(items: dict, row: dict, people: dict[str, dict], units: dict[str, str]) -> str:
    """A row of a list of several fields (a member's vote and opinion): its cells as they
    read, in the form's order."""
    properties = items.get("properties") or {}
    cells = [field_text(properties.get(name) or {}, row[name], people, units)[0]
             for name in [*properties, *(k for k in row if k not in properties)]
             if name in row and row[name] not in (None, "", [])]
    return ", ".join(cells)


class Dossiers:
    """Builds a case's file for whoever may see the case (404 to others)."""

    def __init__(self, db: Database, repository, runtime, access: Access):
        self.db = db
        self.repository = repository
        self.runtime = runtime
        self.access = access
        self.people = People(db)

    def build(self, principal: Principal, instance_id: str) -> dict:
        self.access.require_visible(principal, instance_id)
        with self.db.reading() as session:
            instance = session.get_one(Instance, instance_id)
            definition = session.get_one(Definition, instance.definition_id)
            rows = list(session.scalars(select(HumanTask).where(
                HumanTask.instance_id == instance_id).order_by(HumanTask.created_at,
                                                               HumanTask.id)))
            candidates: dict[str, list[str]] = {}
            for task_id, username in session.execute(
                    select(TaskCandidate.task_id, TaskCandidate.username)
                    .where(TaskCandidate.instance_id == instance_id,
                           TaskCandidate.task_open.is_(True))
                    .order_by(TaskCandidate.username)):
                candidates.setdefault(task_id, []).append(username)
            completions = {}
            for event_id, details in session.execute(
                    select(AuditEvent.id, AuditEvent.details).where(
                        AuditEvent.instance_id == instance_id,
                        AuditEvent.action == "task_completed").order_by(AuditEvent.id)):
                if isinstance(details, dict) and details.get("task_id"):
                    completions[details["task_id"]] = (event_id, details)
            unit = session.get(OrgUnit, instance.unit_id) if instance.unit_id else None
            unit_name = unit.name if unit else None
            # the documents steps issued, with their audit entry: it follows the entry of
            # the step that issued it in the case's one order of events
            issued_at_event = {
                (details or {}).get("document_id"): event_id
                for event_id, details in session.execute(
                    select(AuditEvent.id, AuditEvent.details).where(
                        AuditEvent.instance_id == instance_id,
                        AuditEvent.action == "document_issued"))}
            issued = [(issued_at_event.get(row.id), row) for row in session.execute(
                select(IssuedDocument.id, IssuedDocument.reference, IssuedDocument.title,
                       IssuedDocument.issued_at)
                .where(IssuedDocument.instance_id == instance_id)
                .order_by(IssuedDocument.issued_at, IssuedDocument.number))]
        workflow = self.runtime.workflow(instance_id)
        forms = forms_of(definition)
        settings = self.repository.settings(definition)
        roles = settings.get("roles") or {}
        stages = self.repository.stage_labels()
        try:
            names = diagrams.element_names(diagrams.main_file(definition.sources,
                                                              definition.key)[1])
        except KeyError:
            names = {}
        spiff_tasks = {}
        for row in rows:
            try:
                spiff_tasks[row.id] = workflow.get_task_from_id(uuid.UUID(row.id))
            except (TaskNotFoundException, ValueError):   # left behind by a migration or a
                spiff_tasks[row.id] = None                # reset: the audit log says it
        closed = [r for r in rows if r.status == TaskStatus.COMPLETED]
        # in the order the steps were taken (the audit log's), not by the clock alone
        closed.sort(key=lambda r: (completions.get(r.id, (0,))[0] or 0,
                                   as_utc(r.completed_at or r.created_at), r.id))
        opened = [r for r in rows if r.status == TaskStatus.OPEN]
        data = self._case_data(workflow)
        usernames = {instance.started_by, *(r.completed_by for r in closed),
                     *(r.assignee for r in opened),
                     *(u for r in opened for u in candidates.get(r.id, ()))}
        # form values that name users (a council's chair, the implementers) are shown by
        # name: the values of the fields the form declares person fields (units:
        # the fields it declares unit fields)
        unit_ids: set[str] = set()
        for row in closed:
            task = spiff_tasks.get(row.id)
            schema = forms.get((row.form or "").rsplit("/", 1)[-1]) or {}
            values = (task.data if task is not None else {}) or {}
            usernames.update(username for _, username in person_values(schema, values))
            unit_ids.update(unit_id for _, unit_id in unit_values(schema, values))
        units = self._unit_names(instance.variant, unit_ids)
        people = self.people.of(usernames)
        people = {u: p for u, p in people.items() if u in usernames}
        known = {u: p for u, p in people.items() if p["full_name"] != u or p["positions"]}

        def lane(row: HumanTask) -> dict:
            spec = roles.get(row.lane or "") or {}
            return {"name": row.lane, "label": spec.get("label") or row.lane,
                    "label_en": spec.get("label_en") or spec.get("label") or row.lane}

        def step_name(row: HumanTask) -> str:
            return row.name or names.get(row.element_id) or row.element_id

        def legal_basis(row: HumanTask) -> str | None:
            task = spiff_tasks.get(row.id)
            if task is None:
                return None
            return policy.element_properties(task.task_spec).get("legalBasis") or None

        def recorded(row: HumanTask) -> tuple[dict, list[dict], list[dict]]:
            """The form's title, its filled fields and the files attached."""
            schema = forms.get((row.form or "").rsplit("/", 1)[-1]) or {}
            task = spiff_tasks.get(row.id)
            values = dict(task.data) if task is not None else {
                k: (v or {}).get("after") for k, v in
                (completions.get(row.id, (0, {}))[1].get("changed") or {}).items()}
            fields, files = [], []
            for name, prop in (schema.get("properties") or {}).items():
                if not isinstance(prop, dict) or name not in values:
                    continue
                value = values[name]
                if value is None or value == "" or value == []:
                    continue
                attached = _files(value)
                if attached is not None:
                    files += [{**f, "field": name, "label": prop.get("title") or name}
                              for f in attached]
                    continue
                text, kind = field_text(prop, value, known, units)
                fields.append({"name": name, "label": prop.get("title") or name,
                               "label_en": prop.get("x-title-en") or prop.get("title") or name,
                               "value": value, "text": text, "kind": kind})
            form = {"file": row.form, "title": schema.get("title"),
                    "title_en": schema.get("x-title-en") or schema.get("title")}
            return form, fields, files

        steps: list[dict] = []
        polls: dict[str, dict] = {}
        for row in closed:
            form, fields, files = recorded(row)
            entry = {"task_id": row.id, "element_id": row.element_id, "name": step_name(row),
                     "lane": lane(row), "form": form, "by": people.get(row.completed_by or ""),
                     "at": iso(row.completed_at), "at_text": datetime_text(row.completed_at),
                     "legal_basis": legal_basis(row), "fields": fields, "attachments": files}
            task = spiff_tasks.get(row.id)
            loop = task.parent if task is not None and isinstance(
                getattr(task.parent, "task_spec", None), LoopTask) else None
            if loop is None:
                steps.append({"kind": "step", **entry})
                continue
            poll = polls.get(str(loop.id))
            if poll is None:
                decided = policy.decision_fields(loop.task_spec if task is None
                                                 else task.task_spec)
                poll = {"kind": "collective", "element_id": row.element_id,
                        "name": step_name(row),
                        "lane": lane(row), "legal_basis": legal_basis(row),
                        "counted": list(decided), "members": [], "counts": []}
                polls[str(loop.id)] = poll
                steps.append(poll)
            poll["members"].append(entry)
        for poll in polls.values():
            poll["counts"] = self._counts(poll)
            poll["at"] = poll["members"][-1]["at"]
            poll["at_text"] = poll["members"][-1]["at_text"]
        current = [{"task_id": r.id, "element_id": r.element_id, "name": step_name(r),
                    "lane": lane(r), "due_at": iso(r.due_at), "due_text": date_text(r.due_at),
                    "legal_basis": legal_basis(r), "assignee": people.get(r.assignee or ""),
                    "candidates": [people[u] for u in candidates.get(r.id, ()) if u in people]}
                   for r in opened]
        self._attach_documents(steps, issued, {task: event for task, (event, _) in
                                               completions.items()})
        titled = title_fields(definition)
        stage = stages.get(instance.stage or "") or {}
        decision_labels: dict[str, str] = {}
        for schema in forms.values():
            for prop in (schema.get("properties") or {}).values():
                if isinstance(prop, dict):
                    decision_labels.update(prop.get("x-enum-labels") or {})
        return {
            "instance_id": instance.id,
            "title": _title_from(titled, data) or instance.business_key
            or f"{definition.name or definition.key} · {instance.id[:8]}",
            "business_key": instance.business_key,
            "process": {"key": definition.key, "name": definition.name,
                        "version": definition.version, "variant": instance.variant},
            "status": str(instance.status),
            "stage": {"name": instance.stage, "label": stage.get("label") or instance.stage,
                      "label_en": stage.get("label_en") or stage.get("label")
                      or instance.stage},
            "latest_decision": {"value": instance.latest_decision,
                         "label": decision_labels.get(instance.latest_decision or "",
                                                      instance.latest_decision)},
            "unit": {"id": instance.unit_id, "name": unit_name},
            "proposer": people.get(instance.started_by),
            "started_at": iso(instance.started_at),
            "started_at_text": datetime_text(instance.started_at),
            "ended_at": iso(instance.ended_at),
            "steps": steps,
            "current": current,
            "attachments": [f for s in steps for b in ([s] if s["kind"] == "step"
                                                       else s["members"])
                            for f in b["attachments"]],
        }

    @staticmethod
    def _attach_documents(steps: list[dict], issued: list, event_of: dict) -> None:
        """Each step lists the official documents its completion issued: a document's
        audit entry comes right after the entry of the step that issued it (a script that
        tallies a vote issues the minutes in the step of the last ballot)."""
        taken = []
        for step in steps:
            step["documents"] = []
            bodies = [step] if step["kind"] == "step" else step["members"]
            events = [event_of.get(b["task_id"]) for b in bodies]
            taken.append((max((e for e in events if e is not None), default=None), step))
        for event_id, document in issued:
            if event_id is None:           # a correction: issued from the case, not a step
                continue
            before = [(e, s) for e, s in taken if e is not None and e <= event_id]
            if before:
                max(before, key=lambda pair: pair[0])[1]["documents"].append({
                    "id": document.id, "reference": document.reference,
                    "title": document.title, "date_text": date_text(document.issued_at)})

    @staticmethod
    def _case_data(workflow) -> dict:
        data: dict = {}
        for task in all_tasks(workflow, state=TaskState.COMPLETED):
            data.update(task.data)
        data.update(workflow.data)
        return data

    def _unit_names(self, variant: str, unit_ids: set[str]) -> dict[str, str]:
        """Unit id → name, for the units of ``variant`` among ``unit_ids``."""
        if not unit_ids:
            return {}
        with self.db.reading() as session:
            return dict(session.execute(select(OrgUnit.id, OrgUnit.name).where(
                OrgUnit.id.in_(unit_ids), OrgUnit.variant == variant)).all())

    @staticmethod
    def _counts(poll: dict) -> list[dict]:
        counted: dict[tuple[str, str], dict] = {}
        for member in poll["members"]:
            for field in member["fields"]:
                if poll["counted"] and field["name"] not in poll["counted"]:
                    continue
                if field["kind"] not in ("choice", "boolean"):
                    continue
                key = (field["name"], str(field["value"]))
                entry = counted.setdefault(key, {"field": field["name"],
                                                 "label": field["label"],
                                                 "value": field["value"],
                                                 "text": field["text"], "count": 0})
                entry["count"] += 1
        return list(counted.values())


# --- the dossier as one document ------------------------------------------------------------

def docx(dossier: dict) -> bytes:
    """The case file as a Word document (A4, Times New Roman 13), in Vietnamese: the case,
    the steps open now, then each completed step with its form's fields, files and polls."""
    from io import BytesIO

    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml.ns import qn
    from docx.shared import Cm, Pt, RGBColor

    document = Document()
    section = document.sections[0]
    section.page_width, section.page_height = Cm(21), Cm(29.7)
    section.top_margin = section.bottom_margin = Cm(2)
    section.left_margin, section.right_margin = Cm(3), Cm(2)
    for style_name in ("Normal", "Title", "Heading 1", "Heading 2", "Table Grid"):
        try:
            style = document.styles[style_name]
        except KeyError:
            continue
        style.font.name = "Times New Roman"
        fonts = style.element.get_or_add_rPr().get_or_add_rFonts()
        fonts.set(qn("w:eastAsia"), "Times New Roman")
        if style_name == "Normal":
            style.font.size = Pt(13)
        elif style_name.startswith("Heading"):
            style.font.color.rgb = RGBColor(0, 0, 0)
            style.font.size = Pt(14 if style_name == "Heading 1" else 13)

    def heading(text: str, level: int) -> None:
        paragraph = document.add_heading(text, level)
        for run in paragraph.runs:
            run.font.name = "Times New Roman"

    def table(rows: list[tuple[str, str]]) -> None:
        if not rows:
            return
        grid = document.add_table(rows=0, cols=2)
        grid.style = "Table Grid"
        for key, value in rows:
            cells = grid.add_row().cells
            cells[0].text, cells[1].text = key, value
            cells[0].width, cells[1].width = Cm(5.5), Cm(10.5)
            for run in cells[0].paragraphs[0].runs:
                run.bold = True

    def who(person: dict | None) -> str:
        return person["text"] if person else "—"

    title = document.add_paragraph()
    title.alignment = WD_ALIGN_PARAGRAPH.CENTER
    run = title.add_run("HỒ SƠ")
    run.bold, run.font.size = True, Pt(14)
    name = document.add_paragraph()
    name.alignment = WD_ALIGN_PARAGRAPH.CENTER
    run = name.add_run(dossier["title"])
    run.bold, run.font.size = True, Pt(14)
    table([("Thủ tục", dossier["process"].get("name") or dossier["process"]["key"]),
           ("Người đề xuất", who(dossier.get("proposer"))),
           ("Đơn vị", dossier["unit"].get("name") or "—"),
           ("Ngày tạo", dossier["started_at_text"]),
           ("Giai đoạn", dossier["stage"].get("label") or "—"),
           ("Quyết định", dossier["latest_decision"].get("label") or "—")])
    if dossier["current"]:
        heading("Bước đang xử lý", 1)
        for step in dossier["current"]:
            heading(step["name"], 2)
            rows = [("Người thực hiện", step["lane"]["label"] or "—"),
                    ("Hạn xử lý", step["due_text"] or "—")]
            if step.get("legal_basis"):
                rows.append(("Căn cứ", step["legal_basis"]))
            if step.get("assignee"):
                rows.append(("Người nhận xử lý", who(step["assignee"])))
            elif step.get("candidates"):
                rows.append(("Người có thể xử lý",
                             "; ".join(p["text"] for p in step["candidates"])))
            table(rows)
    heading("Các bước đã thực hiện", 1)
    for number, step in enumerate(dossier["steps"], 1):
        heading(f"{number}. {step['name']}", 2)
        if step["kind"] == "collective":
            counted_text = "; ".join(f"{c['text']}: {c['count']}" for c in step["counts"])
            table([("Thực hiện", step["lane"]["label"] or "—"),
                   ("Kết quả biểu quyết",
                    f"{counted_text} (tổng số phiếu: {len(step['members'])})"),
                   *([("Căn cứ", step["legal_basis"])] if step.get("legal_basis") else [])])
            document.add_paragraph()
            table([(who(b["by"]), "; ".join(f["text"] for f in b["fields"])
                    + f" ({b['at_text']})") for b in step["members"]])
            continue
        rows = [("Người thực hiện", who(step.get("by"))), ("Thời gian", step["at_text"])]
        if step.get("legal_basis"):
            rows.append(("Căn cứ", step["legal_basis"]))
        rows += [(f["label"], f["text"]) for f in step["fields"]]
        if step.get("documents"):
            rows.append(("Văn bản ban hành", "; ".join(
                f"{d['title']} số {d['reference']} ngày {d['date_text']}"
                for d in step["documents"])))
        if step["attachments"]:
            rows.append(("Tài liệu đính kèm", "; ".join(f["name"] for f in step["attachments"])))
        table(rows)
    buffer = BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def pdf(dossier: dict) -> bytes:
    """The case file as one PDF (the Word document, converted by LibreOffice)."""
    from .documents.convert import to_pdf
    return to_pdf(docx(dossier))


def file_name(dossier: dict, extension: str) -> str:
    """An ASCII file name for the download: ``ho-so-<short id>.pdf``."""
    return f"ho-so-{dossier['instance_id'][:8]}.{extension}"
