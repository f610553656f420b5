"""Issuing official documents with a step, and reading them.

An element that declares ``nd73:document`` (engine.policy.DocumentRule) issues it when it
completes, inside the step's transaction (:class:`DocumentIssuer`, a step listener): the
condition ``when`` is evaluated over the task data and the submitted form, a number is taken
from the issuing agency's register for the year and kind, the variant's template (deployed
with the definition) is rendered with the case's data, and the DOCX is stored with its
SHA-256, which the step's audit entry ``document_issued`` carries into the case's audit
chain. A failing template stops the step (nothing is written, the form stays): a decision
is not taken without its document.

PDFs are converted the first time someone downloads one and kept (``document_pdfs``):
LibreOffice takes seconds, which inside the step would hold the instance's and the
register's locks that long and make a decision wait for (or fail with) the converter.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import unicodedata
import uuid
from datetime import date, datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from .. import audit, policy
from ..access import Access, Principal
from ..audit import lock_instance
from ..clock import Clock
from ..deadlines import current_settings
from ..errors import N_, Forbidden, InvalidData, NotFound, ScriptError, Unavailable
from ..listeners import Step, element_id
from ..notifications.service import Notifications
from ..org import Org, Unit
from ..repository import DOCUMENT_PREFIX
from ..store import AuditEvent, Database, appends
from ..store.db import fresh
from ..store.models import Document, DocumentPdf, OrgUnit
from . import convert, registers
from .render import TemplateFailed, _Kept, long_date, render, short_date

log = logging.getLogger("nd73.documents")
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
# the rules that refuse a correction, said from their message codes
REFUSALS = (N_("refused.document_issuer"), N_("refused.document_corrected"))
MAX_CORRECTION_REASON = 2000


def _initials(name: str) -> str:
    """A default agency code from its name (not a rule of the decree: set [documents.codes]
    in variant.toml): an upper-case first word (``UBND tỉnh Mẫu`` → UBND), else the initials
    (``Sở Xây dựng`` → SXD)."""
    words = name.split()
    if not words:
        return ""
    if words[0].isupper() and len(words[0]) > 1:
        return words[0]
    return "".join(w[0] for w in words if w[0].isalpha()).upper()


# the titles, numbers and dates of an instance's documents, built once: a Core statement
# run on the step's connection (through the session, the ORM's handling of a statement
# cost four times what the database did)
_DOCUMENTS = Document.__table__
# session.info key: the earlier documents of each instance, as the unit of work read them
_EARLIER_KEY = "nd73_earlier_documents"
_EARLIER = (select(_DOCUMENTS.c.title, _DOCUMENTS.c.reference, _DOCUMENTS.c.issued_at)
            .where(_DOCUMENTS.c.instance_id == bindparam("instance_id"))
            .order_by(_DOCUMENTS.c.issued_at))


def _json_value(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _as_json(value: Any) -> Any:
    """``value`` as JSON gives it back: the plain values of task data (text, numbers,
    lists, objects with text keys) copied as they are, anything else written as JSON and
    read again."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list or kind is tuple:
        return [_as_json(v) for v in value]
    if kind is dict and all(type(k) is str for k in value):
        return {k: _as_json(v) for k, v in value.items()}
    return json.loads(json.dumps(value, default=_json_value, ensure_ascii=False))


def json_safe(values: dict) -> dict:
    """The case's data as the JSON the document keeps (dates in ISO 8601)."""
    return _as_json(values)


def _plain(text: str) -> str:
    return unicodedata.normalize("NFC", text)



def _full_names(session: Session, usernames: list[str]) -> dict[str, str | None]:
    """The full names of the users of those names (None for a name no user has), from the
    users the unit of work has read (:meth:`Notifications.prefetch`: those missing in one
    statement, kept for the unit's later documents and notifications)."""
    users = Notifications.prefetch(session, usernames)
    return {name: users[name].full_name if name in users else None for name in usernames}


# the templates a definition deployed, decoded from its sources' text once per text (a
# step issues from the same few: decoding one at every document took as long as taking its
# number); the same bytes each time, which the renderer keeps its prepared template by
_DECODED = _Kept(32)


def _template_of(sources: dict[str, str], name: str) -> bytes | None:
    """The document template ``name`` deployed with a definition (None if it was not)."""
    text = sources.get(DOCUMENT_PREFIX + name)
    return _DECODED.get(text, base64.b64decode) if text is not None else None


class Documents:
    def __init__(self, db: Database, clock: Clock, access: Access, org: Org, repository):
        self.db = db
        self.clock = clock
        self.access = access
        self.org = org
        self.repository = repository

    # --- issuing -----------------------------------------------------------------------
    def settings(self) -> dict:
        return dict(current_settings().get("documents") or {})

    def _unit(self, unit_id: str | None) -> Unit | None:
        if not unit_id:
            return None
        try:
            return self.org.unit(unit_id)
        except NotFound:
            return None

    def _agency(self, unit_id: str | None) -> Unit | None:
        if not unit_id:
            return None
        try:
            return self.org.agency_of(unit_id)
        except NotFound:
            return None

    def _resolve(self, role: str, step: Step, data: dict):
        try:
            return self.org.resolve(role, proposer=step.proposer(data),
                                    unit_id=step.instance.unit_id,
                                    settings=current_settings(), data=data)
        except (KeyError, ValueError, InvalidData, NotFound) as exc:
            log.warning("document role %s of %s: %s", role, step.instance.id, exc)
            return None

    def signer_and_agency(self, step: Step, rule: policy.DocumentRule, data: dict
                          ) -> tuple[str, Unit | None]:
        """Who signs (``signerFrom``'s user, the head among ``signer``'s people, else whoever
        did the step) and the issuing agency (``issuer``'s, else the signer role's, else the
        signer's own, else the case's)."""
        signer, agency = step.actor, None
        named = data.get(rule.signer_from) if rule.signer_from else None
        if isinstance(named, str) and named:
            signer = named
        elif rule.signer:
            found = self._resolve(rule.signer, step, data)
            if found is not None and found.usernames:
                heads = [u for u in found.usernames
                         if "head" in self.org.positions(u, found.unit_id)]
                signer = (heads or found.usernames)[0]
                agency = self._agency(found.unit_id)
        if rule.issuer:
            found = self._resolve(rule.issuer, step, data)
            agency = self._agency(found.unit_id if found is not None else None) or agency
        if agency is None:
            units = self.org.units_of(signer)
            agency = self._agency(units[0] if units else step.instance.unit_id)
        return signer, agency

    @staticmethod
    def _looked_up(get: Callable[[list[str]], dict[str, Any]], shown: Callable[[Any], str]
                   ) -> Callable[[Any], str]:
        """A template filter giving the ``shown`` text of the row ``get`` finds for an id (or
        a list of ids, joined), the id itself when there is no such row; each id read once,
        the ids of a list not read yet together (``get``: the rows of some ids, by id)."""
        cache: dict[str, str] = {}

        def read(keys) -> None:
            unread = [key for key in dict.fromkeys(keys) if key and key not in cache]
            if unread:
                rows = get(unread)
                for key in unread:
                    row = rows.get(key)
                    cache[key] = shown(row) if row is not None else key

        def show(value: Any) -> str:
            if isinstance(value, (list, tuple)):
                read(str(v or "") for v in value if not isinstance(v, (list, tuple)))
                return ", ".join(show(v) for v in value)
            key = str(value or "")
            read([key])
            return cache.get(key, key)
        return show

    def _names(self, session: Session) -> Callable[[Any], str]:
        return self._looked_up(lambda keys: _full_names(session, keys), str)

    def _unit_names(self, session: Session) -> Callable[[Any], str]:
        return self._looked_up(lambda keys: {key: session.get(OrgUnit, key) for key in keys},
                               lambda unit: unit.name)

    def _signer(self, session: Session, username: str, agency: Unit | None,
                authority: str, settings: dict) -> tuple[list[str], str, str]:
        """The signer's lines (thẩm quyền ký: TM./KT./Q. and position) and full name."""
        titles = (settings.get("titles") or {}).get(agency.kind if agency else "", {})
        positions = self.org.positions(username, agency.id) if agency else []
        head = str(titles.get("head") or "THỦ TRƯỞNG CƠ QUAN").upper()
        own = next((str(titles[p]).upper() for p in positions if p in titles), "")
        deputy = "deputy" in positions and "head" not in positions
        lines: list[str] = []
        if authority == "TM." and agency is not None:
            collective = (settings.get("collectives") or {}).get(agency.kind) or agency.name
            lines.append(f"TM. {str(collective).upper()}")
        if authority == "Q.":
            lines.append(f"Q. {head}")
        elif deputy or authority == "KT.":
            lines += [f"KT. {head}", own or "PHÓ " + head]
        else:
            lines.append(own or head)
        full_name = _full_names(session, [username])[username]
        return lines, (full_name if full_name is not None else username), head

    def issue(self, step: Step, rule: policy.DocumentRule, task, data: dict) -> Document:
        session, instance = step.session, step.instance
        settings = self.settings()
        template = _template_of(step.definition.sources, rule.template)
        if template is None:
            raise InvalidData(f"document template '{rule.template}' was not deployed with "
                              "the definition", code="document.template_missing",
                              params={"template": rule.template})
        signer, agency = self.signer_and_agency(step, rule, data)
        agency_id = agency.id if agency is not None else instance.variant
        codes = settings.get("codes") or {}
        code = str(codes.get(agency_id) or (_initials(agency.name) if agency else ""))
        local = step.now.astimezone(LOCAL)
        number = registers.take_number(session, agency_id, local.year, rule.kind)
        reference = registers.reference(number, rule.kind, code)
        context = self._context(step, rule, task, data, agency, signer, reference, local,
                                settings)
        document = fresh(Document, dict(
            id=str(uuid.uuid4()), instance_id=instance.id, variant=instance.variant,
            element_id=element_id(task), template=rule.template, kind=rule.kind,
            agency_id=agency_id, year=local.year, number=number, reference=reference,
            title=rule.title, legal_basis=context["doc"]["legal_basis"], issued_at=step.now,
            issued_by=step.actor, signer=signer, replaces_id=None, correction_reason=None,
            context=context, sha256="", content=b""))
        self._render_into(session, document, template)
        # written with the step's other new rows (one INSERT each table), not by its flush:
        # nothing in the step reads the document back
        appends.add(session, _DOCUMENTS, **{key: document.__dict__[key]
                                            for key in _DOCUMENTS.columns.keys()})
        step.audit.append(audit.entry(instance.id, instance.definition_id, step.now,
                                      step.actor, "document_issued", element_id(task),
                                      self._audit_details(document)))
        return document

    @staticmethod
    def _audit_details(document: Document) -> dict:
        # the kind and title are in the document's immutable row; the chain records which
        # document, its number and the hash of its content
        return {"document_id": document.id, "reference": document.reference,
                "sha256": document.sha256,
                **({"replaces": document.replaces_id} if document.replaces_id else {})}

    def _render_into(self, session: Session, document: Document, template: bytes) -> None:
        try:
            content = render(template, document.context, self._names(session),
                             self._unit_names(session))
        except TemplateFailed as exc:
            raise InvalidData(f"document template '{document.template}' cannot be rendered: "
                              f"{exc}", code="document.template_failed",
                              params={"template": document.template, "error": str(exc)})
        document.content = content
        document.sha256 = hashlib.sha256(content).hexdigest()

    def _context(self, step: Step, rule: policy.DocumentRule, task, data: dict,
                 agency: Unit | None, signer: str, reference: str, local: datetime,
                 settings: dict) -> dict:
        session, instance = step.session, step.instance
        parent = None
        if agency is not None and agency.parent_id:
            parent = self._unit(agency.parent_id)
        place = settings.get("place") or ""
        if not place and agency is not None:
            province = self.org.province_of(agency.id)
            place = re.sub(r"^(UBND\s+)?(tỉnh|thành phố)\s+", "", province.name,
                           flags=re.IGNORECASE)
        # the earlier documents' titles, numbers and dates only (not their content), read
        # once per unit of work: the documents a step issues are written when it commits
        stored = session.info.setdefault(_EARLIER_KEY, {})
        if instance.id not in stored:
            stored[instance.id] = [
                f"{d.title} số {d.reference} ngày {short_date(d.issued_at.astimezone(LOCAL))}"
                for d in session.connection().execute(_EARLIER, {"instance_id": instance.id})]
        earlier = list(stored[instance.id])
        # and those the unit of work issued for it before this one, queued to be written
        # (engine.store.appends; timers fired together step several instances in one unit)
        earlier += [f"{d['title']} số {d['reference']} ngày "
                    f"{short_date(d['issued_at'].astimezone(LOCAL))}"
                    for d in appends.pending(session, _DOCUMENTS)
                    if d["instance_id"] == instance.id]
        lines, signer_name, head = self._signer(session, signer, agency, rule.authority,
                                                settings)
        if rule.authority == "TM." and agency is not None:
            issuer_title = lines[0][len("TM. "):]
        else:
            issuer_title = f"{head} {_plain(agency.name).upper()}" if agency else head
        bases = [str(b) for b in settings.get("bases") or []]
        recipients = [r.strip() for r in rule.recipients.split(";") if r.strip()]
        values = json_safe({k: v for k, v in data.items()
                            if isinstance(k, str) and k.isidentifier() and k != "doc"})
        return {**values, "doc": {
            "parent_agency": _plain(parent.name).upper() if parent else "",
            "issuer_title": issuer_title,
            "agency": _plain(agency.name).upper() if agency else "",
            "agency_name": _plain(agency.name) if agency else "",
            "reference": reference, "place": place, "date": long_date(local),
            "date_short": short_date(local), "title": rule.title, "kind": rule.kind,
            "bases": bases, "legal_basis": policy.legal_basis(task.task_spec) or "",
            "earlier": earlier, "recipients": recipients, "authority_lines": lines,
            "signer_name": signer_name, "case_unit": self._unit_name(instance.unit_id),
            "correction": "", "replaces": ""}}

    def _unit_name(self, unit_id: str | None) -> str:
        unit = self._unit(unit_id)
        return unit.name if unit is not None else ""

    # --- reading -----------------------------------------------------------------------
    def _visible(self, session: Session, principal: Principal, document_id: str) -> Document:
        document = session.get(Document, document_id)
        if document is None or not self.access.can_see_instance(
                principal, document.instance_id, session):
            raise NotFound(f"document {document_id} does not exist",
                           code="document.not_found", document_id=document_id)
        return document

    def of_instance(self, instance_id: str, *, principal: Principal) -> list[dict]:
        with self.db.reading() as session:
            self.access.require_visible(principal, instance_id, session)
            rows = session.scalars(select(Document).where(Document.instance_id == instance_id)
                                   .order_by(Document.issued_at, Document.number))
            documents = list(rows)
            replaced = {d.replaces_id: d.id for d in documents if d.replaces_id}
            return [self.as_dict(d, replaced.get(d.id)) for d in documents]

    def get(self, document_id: str, *, principal: Principal) -> dict:
        with self.db.reading() as session:
            document = self._visible(session, principal, document_id)
            replaced_by = session.scalar(select(Document.id).where(
                Document.replaces_id == document.id))
            return self.as_dict(document, replaced_by)

    @staticmethod
    def as_dict(document: Document, replaced_by: str | None = None) -> dict:
        doc = (document.context or {}).get("doc", {})
        return {"id": document.id, "instance_id": document.instance_id,
                "variant": document.variant, "element_id": document.element_id,
                "kind": document.kind,
                "template": document.template, "agency_id": document.agency_id,
                "agency": doc.get("agency", ""), "year": document.year,
                "number": document.number, "reference": document.reference,
                "title": document.title, "legal_basis": document.legal_basis,
                "issued_at": document.issued_at, "issued_by": document.issued_by,
                "signer": document.signer, "signer_name": doc.get("signer_name", ""),
                "sha256": document.sha256, "size": len(document.content),
                "replaces": document.replaces_id, "replaced_by": replaced_by,
                "correction_reason": document.correction_reason}

    def file_name(self, document: dict, suffix: str) -> str:
        stem = re.sub(r"[^0-9A-Za-z]+", "-", unicodedata.normalize(
            "NFKD", document["reference"].replace("Đ", "D").replace("đ", "d"))
            .encode("ascii", "ignore").decode()).strip("-")
        return f"{stem or document['id']}.{suffix}"

    def docx(self, document_id: str, *, principal: Principal) -> tuple[dict, bytes]:
        with self.db.reading() as session:
            document = self._visible(session, principal, document_id)
            return self.as_dict(document), document.content

    def pdf(self, document_id: str, *, principal: Principal) -> tuple[dict, bytes]:
        with self.db.reading() as session:
            document = self._visible(session, principal, document_id)
            meta, content = self.as_dict(document), document.content
            cached = session.get(DocumentPdf, document_id)
            if cached is not None:
                return meta, cached.content
        try:
            pdf = convert.to_pdf(content)
        except convert.ConversionFailed as exc:
            log.error("document %s: %s", document_id, exc)
            raise Unavailable(f"the PDF could not be made: {exc}",
                              code="document.pdf_failed") from None
        with self.db.transaction() as session:
            if session.get(DocumentPdf, document_id) is None:   # another request's is kept
                session.add(DocumentPdf(document_id=document_id, content=pdf,
                                        sha256=hashlib.sha256(pdf).hexdigest(),
                                        rendered_at=self.clock.now()))
        return meta, pdf

    # --- corrections ---------------------------------------------------------------------
    def correct(self, document_id: str, reason: str, *, principal: Principal) -> dict:
        """Issue a correction: a new document, numbered in the same register, rendered from
        the same template and data as the one it replaces, with the reason. Its issuer, or
        an administrator of the variant, may correct a document, once."""
        reason = (reason or "").strip()
        if not reason:
            raise InvalidData("a correction needs its reason", code="document.reason_missing",
                              field="reason")
        if len(reason) > MAX_CORRECTION_REASON:
            raise InvalidData("the reason is too long", code="document.reason_too_long",
                              field="reason", params={"max": MAX_CORRECTION_REASON})
        with self.db.transaction() as session:
            original = self._visible(session, principal, document_id)
            instance = lock_instance(session, original.instance_id)
            assert instance is not None
            if original.issued_by != principal.username and not principal.is_admin(
                    original.variant):
                raise Forbidden("only the document's issuer or an administrator may correct "
                                "it", rule="document_issuer")
            if session.scalar(select(Document.id).where(Document.replaces_id == original.id)):
                raise Forbidden("the document was already corrected; correct the correction",
                                rule="document_corrected")
            definition = self.repository.get(instance.definition_id, session)
            template = _template_of(definition.sources, original.template)
            if template is None:
                raise InvalidData(f"document template '{original.template}' is gone",
                                  code="document.template_missing",
                                  params={"template": original.template})
            now = self.clock.now()
            local = now.astimezone(LOCAL)
            number = registers.take_number(session, original.agency_id, local.year,
                                           original.kind)
            code = original.reference.split("/", 1)[1].split("-", 1)[1] \
                if "-" in original.reference else ""
            reference = registers.reference(number, original.kind, code)
            context = dict(original.context)
            doc = dict(context.get("doc") or {})
            doc.update(reference=reference, date=long_date(local), date_short=short_date(local),
                       correction=reason, replaces=original.reference,
                       earlier=[*doc.get("earlier", []), f"{original.title} số "
                                f"{original.reference} ngày "
                                f"{short_date(original.issued_at.astimezone(LOCAL))}"])
            context["doc"] = doc
            document = Document(id=str(uuid.uuid4()), instance_id=original.instance_id,
                                variant=original.variant, element_id=original.element_id,
                                template=original.template, kind=original.kind,
                                agency_id=original.agency_id, year=local.year, number=number,
                                reference=reference, title=original.title,
                                legal_basis=original.legal_basis, issued_at=now,
                                issued_by=principal.username, signer=original.signer,
                                replaces_id=original.id, correction_reason=reason,
                                context=context, sha256="", content=b"")
            self._render_into(session, document, template)
            session.add(document)
            session.add(AuditEvent(instance_id=instance.id,
                                   definition_id=instance.definition_id, at=now,
                                   actor=principal.username, action="document_corrected",
                                   element_id=original.element_id,
                                   details={**self._audit_details(document),
                                            "reason": reason}))
            session.flush()
            return self.as_dict(document)


class DocumentIssuer:
    """The step listener that issues the documents elements declare (``nd73:document``)."""

    def __init__(self, documents: Documents, evaluate: Callable[[str, dict], Any]):
        self.documents = documents
        self.evaluate = evaluate

    def step_saving(self, step: Step) -> None:
        done = []
        if step.user_task is not None:
            done.append((step.user_task, {**step.user_task.data, **step.submitted}))
        done += [(task, task.data) for task in step.completed if task is not step.user_task]
        for task, data in done:
            for rule in policy.documents(task.task_spec):
                if rule.when:
                    try:
                        if not self.evaluate(rule.when, data):
                            continue
                    except ScriptError as exc:
                        raise InvalidData(f"document {rule.template}: condition failed: {exc}",
                                          code="document.condition_failed",
                                          params={"template": rule.template,
                                                  "error": str(exc)}) from None
                # the documents, their audit entries and the instance's row go out with the
                # step's one flush, not in a flush of their own before the first read here
                with step.session.no_autoflush:
                    document = self.documents.issue(step, rule, task, data)
                step.documents.append({
                    "reference": document.reference, "title": document.title,
                    "kind": document.kind,
                    "date": short_date(document.issued_at.astimezone(LOCAL))})

    def step_saved(self, step: Step) -> None:
        pass
