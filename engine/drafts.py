"""Drafts: a variant's process folder edited apart from deploying.

What the designer studio edits is the variant's *draft*: its diagrams, forms, settings
(``variant.toml``) and templates, stored in the database (it survives restarts and is the
same in every server process). Deploying is a separate, explicit step that goes through
``Repository.deploy`` (a new version of each process that changed; running cases stay on
their version), after which the draft is gone: the deployed folder is what it said.

One draft per variant, shared by the variant's designers: a team edits one working copy, as
SpiffArena's process models and Camunda Web Modeler's project files are shared by their
collaborators, and whoever deploys deploys what the team prepared. A per-designer copy would
make colleagues' drafts silently overwrite each other at deployment. Every save bumps the
draft's ``revision``; a save or a deployment that names the revision it read is refused
with ``Conflict`` when a colleague saved since.

A draft is a folder, files by path::

    <name>.bpmn, <name>.dmn    diagrams
    forms/<name>.json          JSON-Schema forms of user tasks
    variant.toml               the settings; when it ``extends`` another variant, that
                               variant's deployed settings and files lie under the draft's
    notifications/<file>       notification templates (<kind>.subject.txt, .txt, .html) and
                               their shared parts (_<name>.txt, .html)
    documents/<name>.docx      official document templates

The API (``engine.drafts``; every call takes the acting ``Principal`` and refuses anyone who
is not a designer of the variant with ``Forbidden``)::

    get(variant, who) -> Draft | None          the draft, if there is one
    open(variant, who) -> Draft                the draft, made from the deployed folder
    deployed_folder(variant, who) -> dict      the deployed folder, {path: bytes}
    save(variant, files, who, revision=None)   replace the whole folder
    put_file(variant, path, content, who, revision=None)
    remove_file(variant, path, who, revision=None)
    discard(variant, who)
    inputs(variant, files) -> FolderInputs     what deploying the folder would deploy
    validate(variant, who) -> list[BuiltProcess]   as deployment validates (DefinitionInvalid)
    changes(variant, who) -> Changes           what deploying the draft would change
    deploy(variant, who, revision=None) -> list[DeployedProcess]

    to_zip(files) -> bytes, from_zip(data) -> files   the folder as a zip (checked: names,
                                               sizes, XML, TOML, JSON; each refusal names
                                               the entry)
"""
from __future__ import annotations

import base64
import io
import json
import stat
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import PurePosixPath

import tomli_w
from lxml import etree
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from . import diagrams
from .access import Principal
from .bpmn import BPMN_NS, BuiltProcess, parse_file
from .errors import N_, Conflict, DefinitionInvalid, Forbidden, NotFound, Problem
from .notifications import templates as notification_templates
from .repository import DOCUMENT_PREFIX, SETTINGS_SOURCE, DeployedProcess, Repository
from .store import Database
from .store.models import Definition, Draft as DraftRow, DraftFile
from .variants import SETTINGS_FILE, UNCONFIRMED, SourceFile, loads_toml

FORMS = "forms/"
NOTIFICATIONS = notification_templates.SOURCE_PREFIX
# a folder is small: the national one is under 1 MB; these bound what an upload may cost
MAX_FILES = 200
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_TOTAL_BYTES = 24 * 1024 * 1024
MAX_RATIO = 100            # uncompressed / compressed, beyond which an entry is a zip bomb
# files of a province's folder in the repository that are no part of its procedures
# the refusal of whoever is not a designer of the variant (Forbidden rule "designer")
REFUSALS = (N_("refused.designer"),)
IGNORED = ("org.toml", ".DS_Store", "Thumbs.db", "README.md")


@dataclass
class Draft:
    variant: str
    revision: int
    based_on: int
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime
    files: dict[str, bytes]


@dataclass
class FolderInputs:
    """What ``Repository.deploy`` takes, read from a folder."""
    sources: list[SourceFile]
    forms: dict[str, bytes]
    settings: dict
    templates: dict[str, bytes]
    documents: dict[str, bytes]


# --- the folder's files ---------------------------------------------------------------------

def _refuse(path: str, message: str, code: str, **params) -> DefinitionInvalid:
    return DefinitionInvalid([Problem(path, message, code=code, params={"path": path,
                                                                          **params})])


def check_path(path: str) -> str:
    """A path of the folder's kinds, or DefinitionInvalid naming it: no absolute path, no
    ``..``, no other folder, no other kind of file."""
    if not path or "\\" in path or "\0" in path or ":" in path or path.startswith("/") \
            or any(part in ("", ".", "..") for part in path.split("/")) or len(path) > 255:
        raise _refuse(path, "the path leaves the variant folder or is not a plain path",
                      N_("draft.path_outside"))
    parts = PurePosixPath(path).parts
    name = parts[-1]
    if name.startswith("."):
        raise _refuse(path, "hidden files are not part of a variant folder",
                      N_("draft.path_kind"))
    allowed = (len(parts) == 1 and (name.endswith((".bpmn", ".dmn")) or name == SETTINGS_FILE)
               or len(parts) == 2 and (
                   parts[0] == "forms" and name.endswith(".json")
                   or parts[0] == "notifications" and name.endswith((".txt", ".html"))
                   or parts[0] == "documents" and name.endswith(".docx")))
    if not allowed:
        raise _refuse(path, "a variant folder holds *.bpmn, *.dmn, variant.toml, "
                            "forms/*.json, notifications/*.txt|html and documents/*.docx",
                      N_("draft.path_kind"))
    return path


def check_file(path: str, content: bytes) -> None:
    """Refuse a file that cannot be what its name says, naming it: a BPMN file that is not
    safe, well-formed XML, a variant.toml that is not TOML, a form that is not a JSON
    object, a template that is not UTF-8 text, a document that is not a .docx."""
    check_path(path)
    if len(content) > MAX_FILE_BYTES:
        raise _refuse(path, f"the file is larger than {MAX_FILE_BYTES:,} bytes",
                      N_("draft.file_too_large"), limit=MAX_FILE_BYTES)
    if path.endswith((".bpmn", ".dmn")):
        parsed = parse_file(SourceFile(path, content))
        if path.endswith(".bpmn") and etree.QName(parsed.root).namespace != BPMN_NS:
            raise _refuse(path, "not a BPMN 2.0 document (bpmn:definitions)",
                          N_("draft.not_bpmn"))
    elif path == SETTINGS_FILE:
        loads_toml(content, path)
    elif path.startswith(FORMS):
        try:
            schema = json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise _refuse(path, f"not JSON: {exc}", N_("draft.not_json"),
                          detail=str(exc)) from None
        if not isinstance(schema, dict):
            raise _refuse(path, "a form is a JSON object (a JSON Schema)", N_("draft.not_json"),
                          detail="not an object")
    elif path.startswith(NOTIFICATIONS):
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            raise _refuse(path, "a template is UTF-8 text", N_("draft.not_text")) from None
    elif path.startswith(DOCUMENT_PREFIX):
        if not zipfile.is_zipfile(io.BytesIO(content)):
            raise _refuse(path, "not a Word document (.docx)", N_("draft.not_docx"))


def check_folder(files: dict[str, bytes]) -> None:
    if len(files) > MAX_FILES:
        raise _refuse("(zip)", f"more than {MAX_FILES} files", N_("draft.too_many_files"),
                      limit=MAX_FILES)
    problems = []
    for path, content in sorted(files.items()):
        try:
            check_file(path, content)
        except DefinitionInvalid as exc:
            problems.extend(exc.problems)
    if problems:
        raise DefinitionInvalid(problems)


def to_zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[path])
    return out.getvalue()


def _common_folder(names: list[str]) -> str:
    """The one folder every entry is in (a zip of ``lao-cai/``), to take off their paths."""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        top = tops.pop()
        if top not in ("forms", "notifications", "documents") and not top.startswith(".") \
                and top and not any(c in top for c in ":\\\0"):
            return top + "/"
    return ""


def from_zip(data: bytes) -> dict[str, bytes]:
    """The folder a zip holds, every entry checked before any is read in full: a path that
    leaves the folder, a link, an encrypted or oversized entry, a zip bomb (an entry that
    inflates more than MAX_RATIO times) and a file that cannot be what its name says are
    refused, each naming its entry."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise _refuse("(zip)", "not a zip file", N_("draft.not_zip")) from None
    with archive:
        entries = [i for i in archive.infolist() if not i.is_dir()]
        if len(entries) > MAX_FILES:
            raise _refuse("(zip)", f"more than {MAX_FILES} files", N_("draft.too_many_files"),
                          limit=MAX_FILES)
        prefix = _common_folder([i.filename for i in entries])
        problems, files, total = [], {}, 0
        for info in entries:
            name = info.filename
            path = name[len(prefix):] if prefix and name.startswith(prefix) else name
            base = path.rsplit("/", 1)[-1]
            if path.startswith("__MACOSX/") or base in IGNORED and "/" not in path.strip("/") \
                    or base in (".DS_Store", "Thumbs.db"):
                continue
            try:
                check_path(path)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise _refuse(path, "links are not allowed in a variant folder",
                                  N_("draft.zip_link"))
                if info.flag_bits & 0x1:
                    raise _refuse(path, "the entry is encrypted", N_("draft.zip_encrypted"))
                if info.file_size > MAX_FILE_BYTES:
                    raise _refuse(path, f"the entry is larger than {MAX_FILE_BYTES:,} bytes",
                                  N_("draft.file_too_large"), limit=MAX_FILE_BYTES)
                if info.file_size > 1024 * 1024 and \
                        info.file_size > MAX_RATIO * max(info.compress_size, 1):
                    raise _refuse(path, f"the entry inflates more than {MAX_RATIO} times "
                                        "(a zip bomb)", N_("draft.zip_bomb"), ratio=MAX_RATIO)
                total += info.file_size
                if total > MAX_TOTAL_BYTES:
                    raise _refuse(path, f"the folder is larger than {MAX_TOTAL_BYTES:,} bytes",
                                  N_("draft.folder_too_large"), limit=MAX_TOTAL_BYTES)
                if path in files:
                    raise _refuse(path, "the entry is in the zip twice", N_("draft.zip_twice"))
                with archive.open(info) as stream:
                    # the header's size is the sender's word: read no more than allowed
                    content = stream.read(MAX_FILE_BYTES + 1)
                if len(content) > MAX_FILE_BYTES or len(content) != info.file_size:
                    raise _refuse(path, "the entry is not the size its header says",
                                  N_("draft.zip_bomb"), ratio=MAX_RATIO)
                check_file(path, content)
                files[path] = content
            except DefinitionInvalid as exc:
                problems.extend(exc.problems)
                if len(problems) >= 20:
                    break
            except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError) as exc:
                problems.append(Problem(path, f"the entry cannot be read: {exc}",
                                        code=N_("draft.zip_entry"),
                                        params={"path": path, "detail": str(exc)}))
        if problems:
            raise DefinitionInvalid(problems)
        return files


def settings_toml(settings: dict) -> bytes:
    """A variant's deployed (merged) settings as one variant.toml that extends nothing; the
    marks of unconfirmed defaults keep the file that gave each value."""
    data = {k: v for k, v in settings.items() if k != UNCONFIRMED}
    marks = settings.get(UNCONFIRMED) or {}
    if marks:
        data[UNCONFIRMED] = {key: {"note": mark.get("note", ""), "file": mark.get("file", "")}
                             for key, mark in marks.items()}
    head = (f"# Settings of {settings.get('name', '')}, every section written out "
            "(processes/README.md, \"Drafts\").\n")
    return (head + tomli_w.dumps(data)).encode("utf-8")


# --- what deploying a folder changes ----------------------------------------------------------

@dataclass
class ElementChange:
    id: str
    name: str
    kind: str              # the BPMN element's type: userTask, exclusiveGateway, sequenceFlow…
    change: str            # added, removed, changed
    details: list[str] = field(default_factory=list)   # what changed: "name", "condition"…


@dataclass
class FileChange:
    path: str
    change: str            # added, removed, changed
    elements: list[ElementChange] = field(default_factory=list)   # diagrams
    fields: list[dict] = field(default_factory=list)              # forms: field, change


@dataclass
class SettingChange:
    key: str               # section.key
    change: str
    before: object = None
    after: object = None


@dataclass
class Changes:
    diagrams: list[FileChange] = field(default_factory=list)
    forms: list[FileChange] = field(default_factory=list)
    settings: list[SettingChange] = field(default_factory=list)
    files: list[FileChange] = field(default_factory=list)       # templates, documents

    @property
    def empty(self) -> bool:
        return not (self.diagrams or self.forms or self.settings or self.files)

    def to_dict(self) -> dict:
        return {"empty": self.empty, **asdict(self)}


def _properties(element) -> dict[str, str]:
    return {p.get("name"): p.get("value", p.text or "") for p in element.iter()
            if isinstance(p.tag, str) and etree.QName(p).localname == "property"
            and p.get("name")}


def _condition(element) -> str | None:
    found = element.find(f"{{{BPMN_NS}}}conditionExpression")
    return (found.text or "").strip() if found is not None else None


def _script(element) -> str | None:
    found = element.find(f"{{{BPMN_NS}}}script")
    return (found.text or "").strip() if found is not None else None


def _element_details(before, after) -> list[str]:
    details = []
    for attribute in sorted(set(before.attrib) | set(after.attrib)):
        if attribute != "id" and before.get(attribute) != after.get(attribute):
            details.append(attribute)
    if _condition(before) != _condition(after):
        details.append("condition")
    if _script(before) != _script(after):
        details.append("script")
    mine, theirs = _properties(before), _properties(after)
    details += [f"nd73:{name}" for name in sorted(set(mine) | set(theirs))
                if mine.get(name) != theirs.get(name)]
    return details or ["content"]


def diagram_changes(before: str, after: str) -> list[ElementChange]:
    """Element by element, what a diagram's new text changes (tasks, events, gateways,
    flows and their conditions, scripts, the nd73 properties)."""
    old, new = diagrams.elements(before), diagrams.elements(after)
    found = diagrams.diff(before, after)
    changes = []
    for change, ids, source in (("added", found.added, new), ("removed", found.removed, old),
                                ("changed", found.changed, new)):
        for element_id in ids:
            element = source[element_id]
            details = _element_details(old[element_id], new[element_id]) \
                if change == "changed" else []
            changes.append(ElementChange(element_id, element.get("name") or element_id,
                                         etree.QName(element).localname, change, details))
    return changes


def form_changes(before: bytes, after: bytes) -> list[dict]:
    """Field by field, what a form's new schema changes (added, removed, changed, now
    required or no longer)."""
    def read(content):
        try:
            schema = json.loads(content)
        except ValueError:
            schema = {}
        return schema if isinstance(schema, dict) else {}

    old, new = read(before), read(after)
    old_fields, new_fields = old.get("properties") or {}, new.get("properties") or {}
    old_required, new_required = set(old.get("required") or []), set(new.get("required") or [])
    changes = []
    for name in sorted(set(old_fields) | set(new_fields)):
        if name not in old_fields:
            changes.append({"field": name, "change": "added"})
        elif name not in new_fields:
            changes.append({"field": name, "change": "removed"})
        elif old_fields[name] != new_fields[name]:
            changes.append({"field": name, "change": "changed"})
        if name in old_fields and name in new_fields \
                and (name in old_required) != (name in new_required):
            changes.append({"field": name, "change": "required" if name in new_required
                            else "optional"})
    rest = {k for k in set(old) | set(new) if k not in ("properties", "required")}
    if any(old.get(k) != new.get(k) for k in rest):
        changes.append({"field": "(schema)", "change": "changed"})
    return changes


def _flatten(settings: dict) -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in settings.items():
        if key == UNCONFIRMED and isinstance(value, dict):
            for mark, note in value.items():
                flat[f"{UNCONFIRMED}.{mark}"] = note.get("note") if isinstance(note, dict) \
                    else note
        elif key == "figures" and isinstance(value, list):
            for figure in value:
                if isinstance(figure, dict):
                    flat[f"figures.{figure.get('key')}"] = figure
        elif isinstance(value, dict):
            for name, inner in _flatten(value).items():
                flat[f"{key}.{name}"] = inner
        else:
            flat[key] = value
    return flat


def settings_changes(before: dict, after: dict) -> list[SettingChange]:
    """Key by key (``deadlines.decision``, ``calendar.days_off``…)."""
    old, new = _flatten(before), _flatten(after)
    changes = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            changes.append(SettingChange(key, "added", None, new[key]))
        elif key not in new:
            changes.append(SettingChange(key, "removed", old[key], None))
        elif old[key] != new[key]:
            changes.append(SettingChange(key, "changed", old[key], new[key]))
    return changes


def folder_changes(before: FolderInputs, after: FolderInputs) -> Changes:
    changes = Changes()
    old = {s.name: s.content for s in before.sources}
    new = {s.name: s.content for s in after.sources}
    for name in sorted(set(old) | set(new)):
        if name not in old:
            elements = diagram_changes(_EMPTY_BPMN, new[name].decode()) \
                if name.endswith(".bpmn") else []
            changes.diagrams.append(FileChange(name, "added", elements))
        elif name not in new:
            changes.diagrams.append(FileChange(name, "removed"))
        elif old[name] != new[name]:
            elements = diagram_changes(old[name].decode(), new[name].decode()) \
                if name.endswith(".bpmn") else []
            if elements or not name.endswith(".bpmn"):
                changes.diagrams.append(FileChange(name, "changed", elements))
    for name in sorted(set(before.forms) | set(after.forms)):
        if name not in before.forms:
            changes.forms.append(FileChange(FORMS + name, "added",
                                            fields=form_changes(b"{}", after.forms[name])))
        elif name not in after.forms:
            changes.forms.append(FileChange(FORMS + name, "removed"))
        elif before.forms[name] != after.forms[name]:
            fields = form_changes(before.forms[name], after.forms[name])
            if fields:
                changes.forms.append(FileChange(FORMS + name, "changed", fields=fields))
    changes.settings = settings_changes(before.settings, after.settings)
    for prefix, old_files, new_files in (
            (NOTIFICATIONS, before.templates, after.templates),
            (DOCUMENT_PREFIX, before.documents, after.documents)):
        for name in sorted(set(old_files) | set(new_files)):
            change = "added" if name not in old_files else "removed" \
                if name not in new_files else "changed" \
                if old_files[name] != new_files[name] else None
            if change:
                changes.files.append(FileChange(prefix + name, change))
    return changes


_EMPTY_BPMN = f'<definitions xmlns="{BPMN_NS}" id="empty"/>'


# --- the service -----------------------------------------------------------------------------

class Drafts:
    """The variants' drafts (see the module's docstring for the API)."""

    def __init__(self, db: Database, repository: Repository, clock):
        self.db = db
        self.repository = repository
        self.clock = clock

    @staticmethod
    def require_designer(variant: str, who: Principal) -> None:
        if not who.is_designer(variant):
            raise Forbidden(f"only designers of '{variant}' may change its processes",
                            rule="designer", variant=variant)

    # the deployed folder --------------------------------------------------------------------
    def _deployed(self, variant: str) -> tuple[dict[str, bytes], int]:
        latest = self.repository.latest_versions(variant)
        if not latest:
            raise NotFound(f"variant '{variant}' has no deployed definition",
                           code="definition.not_found")
        files: dict[str, bytes] = {}
        settings = None
        for definition in sorted(latest, key=lambda d: d.id):
            for name, text in definition.sources.items():
                if name == SETTINGS_SOURCE:
                    settings = json.loads(text)     # the newest deployment's
                elif name.startswith(DOCUMENT_PREFIX):
                    files[name] = base64.b64decode(text)
                elif name.startswith(FORMS):
                    files[name] = text.encode("utf-8")
                else:
                    files[name] = text.encode("utf-8")
        files[SETTINGS_FILE] = settings_toml(settings or {"name": variant})
        return files, max(d.id for d in latest)

    def deployed_folder(self, variant: str, who: Principal) -> dict[str, bytes]:
        self.require_designer(variant, who)
        return self._deployed(variant)[0]

    # reading and writing the draft -----------------------------------------------------------
    def get(self, variant: str, who: Principal) -> Draft | None:
        self.require_designer(variant, who)
        with self.db.reading() as session:
            row = session.get(DraftRow, variant)
            if row is None:
                return None
            files = {f.path: f.content for f in session.scalars(
                select(DraftFile).where(DraftFile.variant == variant))}
            return Draft(row.variant, row.revision, row.based_on, row.created_by,
                         row.created_at, row.updated_by, row.updated_at, files)

    def open(self, variant: str, who: Principal) -> Draft:
        """The variant's draft; made from the deployed folder when there is none."""
        draft = self.get(variant, who)
        if draft is not None:
            return draft
        files, based_on = self._deployed(variant)
        try:
            return self._write(variant, files, who, 0, based_on=based_on)
        except Conflict:            # a colleague opened it in the same instant: theirs
            found = self.get(variant, who)
            if found is None:
                raise
            return found

    def _write(self, variant: str, files: dict[str, bytes], who: Principal,
               revision: int | None, based_on: int | None = None) -> Draft:
        """Store the folder as the draft's next revision. ``revision``: the one the change
        was made on (0: made on the deployed folder, when there was no draft)."""
        now = self.clock.now()
        try:
            return self._store(variant, files, who, revision, based_on, now)
        except IntegrityError:      # a colleague made the draft in the same instant
            raise Conflict(f"the draft of '{variant}' was made by someone else meanwhile; "
                           "reload it", code="draft.conflict",
                           params={"by": "?", "revision": 1}) from None

    def _store(self, variant: str, files: dict[str, bytes], who: Principal,
               revision: int | None, based_on: int | None, now: datetime) -> Draft:
        with self.db.transaction() as session:
            row = session.get(DraftRow, variant, with_for_update=True)
            stored = row.revision if row is not None else 0
            if revision is not None and stored != revision:
                by = row.updated_by if row is not None else "?"
                raise Conflict(f"the draft of '{variant}' changed since revision {revision} "
                               f"(now {stored}, by {by}); reload it", code="draft.conflict",
                               params={"by": by, "revision": stored})
            if row is None:
                if based_on is None:
                    based_on = session.scalar(select(func.max(Definition.id)).where(
                        Definition.variant == variant)) or 0
                row = DraftRow(variant=variant, revision=0, based_on=based_on,
                               created_by=who.username, created_at=now)
                session.add(row)
            row.revision += 1
            row.updated_by, row.updated_at = who.username, now
            session.flush()
            session.execute(delete(DraftFile).where(DraftFile.variant == variant))
            session.add_all(DraftFile(variant=variant, path=p, content=c)
                            for p, c in sorted(files.items()))
            return Draft(variant, row.revision, row.based_on, row.created_by, row.created_at,
                         row.updated_by, row.updated_at, dict(files))

    def save(self, variant: str, files: dict[str, bytes], who: Principal,
             revision: int | None = None) -> Draft:
        """Replace the draft's folder (a zip uploaded, say); checked file by file."""
        self.require_designer(variant, who)
        check_folder(files)
        self._check_settings(variant, files)
        return self._write(variant, files, who, revision)

    def put_file(self, variant: str, path: str, content: bytes, who: Principal,
                 revision: int | None = None) -> Draft:
        """Add or replace one file of the draft (made from the deployed folder first when
        there is none); a variant.toml is checked as deployment checks settings."""
        self.require_designer(variant, who)
        check_file(path, content)
        draft = self.get(variant, who)
        # a refused file makes no draft either
        files = {**(draft.files if draft is not None else self._deployed(variant)[0]),
                 path: content}
        if path == SETTINGS_FILE:
            self._check_settings(variant, files)
        if revision is None:
            revision = draft.revision if draft is not None else 0   # what this change read
        return self._write(variant, files, who, revision)

    def remove_file(self, variant: str, path: str, who: Principal,
                    revision: int | None = None) -> Draft:
        draft = self.open(variant, who)
        if path not in draft.files:
            raise NotFound(f"the draft of '{variant}' has no file '{path}'",
                           code="draft.no_file", params={"path": path})
        return self._write(variant, {p: c for p, c in draft.files.items() if p != path},
                           who, draft.revision if revision is None else revision)

    def discard(self, variant: str, who: Principal) -> None:
        self.require_designer(variant, who)
        with self.db.transaction() as session:
            session.execute(delete(DraftFile).where(DraftFile.variant == variant))
            session.execute(delete(DraftRow).where(DraftRow.variant == variant))

    # what the folder deploys -----------------------------------------------------------------
    def _check_settings(self, variant: str, files: dict[str, bytes]) -> None:
        if SETTINGS_FILE in files:
            self.settings_of(variant, files)

    def settings_of(self, variant: str, files: dict[str, bytes]) -> dict:
        """The settings a folder deploys, checked as deployment checks them: its
        variant.toml over the deployed settings of the variant it extends (or the
        variant's own deployed settings when the folder has none)."""
        if SETTINGS_FILE not in files:
            deployed, _ = self._deployed(variant)
            files = {**files, SETTINGS_FILE: deployed[SETTINGS_FILE]}
        return self.repository.read_settings_file(variant, files[SETTINGS_FILE])

    def inputs(self, variant: str, files: dict[str, bytes]) -> FolderInputs:
        return self._inputs(variant, files, resolve=True)

    def _inputs(self, variant: str, files: dict[str, bytes], resolve: bool) -> FolderInputs:
        settings = self.settings_of(variant, files)
        if resolve:
            own = loads_toml(files[SETTINGS_FILE], SETTINGS_FILE) if SETTINGS_FILE in files \
                else {}
            if isinstance(own.get("extends"), str):
                # the files of the variant it extends lie under the folder's own
                files = {**{p: c for p, c in self._deployed(own["extends"])[0].items()
                            if p != SETTINGS_FILE}, **files}
        sources = [SourceFile(p, c) for p, c in sorted(files.items())
                   if "/" not in p and p.endswith((".bpmn", ".dmn"))]
        forms = {p[len(FORMS):]: c for p, c in files.items() if p.startswith(FORMS)}
        templates = {p[len(NOTIFICATIONS):]: c for p, c in files.items()
                     if p.startswith(NOTIFICATIONS)}
        documents = {p[len(DOCUMENT_PREFIX):]: c for p, c in files.items()
                     if p.startswith(DOCUMENT_PREFIX)}
        return FolderInputs(sources, forms, settings, templates, documents)

    def validate(self, variant: str, who: Principal) -> list[BuiltProcess]:
        """Validate the draft as deployment would, deploying nothing."""
        inputs = self.inputs(variant, self.open(variant, who).files)
        return self.repository.validate(inputs.sources, inputs.forms, inputs.settings,
                                        inputs.templates, inputs.documents)

    def changes(self, variant: str, who: Principal) -> Changes:
        """What deploying the draft would change in the deployed folder."""
        draft = self.open(variant, who)
        deployed, _ = self._deployed(variant)
        return folder_changes(self._inputs(variant, deployed, resolve=False),
                              self.inputs(variant, draft.files))

    def deploy(self, variant: str, who: Principal, revision: int | None = None
               ) -> list[DeployedProcess]:
        """Deploy the draft through the repository (validated; each changed process gets a
        new version, running cases stay on theirs), then drop it. ``revision``: the one
        the designer reviewed; a draft saved since is refused with Conflict."""
        draft = self.get(variant, who)
        if draft is None:
            raise NotFound(f"variant '{variant}' has no draft", code="draft.none",
                           params={"variant": variant})
        if revision is not None and draft.revision != revision:
            raise Conflict(f"the draft of '{variant}' was saved by {draft.updated_by} since "
                           f"revision {revision} (now {draft.revision}); review it again",
                           code="draft.conflict",
                           params={"by": draft.updated_by, "revision": draft.revision})
        inputs = self.inputs(variant, draft.files)
        results = self.repository.deploy(variant, inputs.sources, who.username,
                                         forms=inputs.forms, settings=inputs.settings,
                                         templates=inputs.templates, documents=inputs.documents)
        with self.db.transaction() as session:
            # a colleague's save after the review stays a draft
            kept = session.scalar(select(DraftRow.revision).where(DraftRow.variant == variant))
            if kept == draft.revision:
                session.execute(delete(DraftFile).where(DraftFile.variant == variant))
                session.execute(delete(DraftRow).where(DraftRow.variant == variant))
        return results
