"""What a definition declares about its steps, beyond what SpiffWorkflow executes: the
project's BPMN extension namespace ``nd73`` (processes/README.md; the moddle descriptor
for modelers is ``processes/nd73.moddle.json``).

A flow element may carry, inside ``bpmn:extensionElements``::

    <nd73:properties>
      <nd73:property name="form" value="vote.schema.json"/>      (and stage, dueDate, …)
    </nd73:properties>
    <nd73:notification kind="…" to="proposer" when="expression"/>
    <nd73:validation field="…" when="expression" message="…" messageEn="…"/>
    <nd73:document template="….docx" kind="QĐ" title="…" issuer="role" authority="TM."
                   when="expression" recipients="…;…"/>

and a ``bpmn:process`` the same ``nd73:properties`` (category, report title …). Element
declarations are copied into each task spec's ``extensions["nd73"]`` when the definition is
built, so they travel with the serialized spec; process properties are read from the
deployed sources. Older definitions that declared properties as ``spiffworkflow:property``
are read the same way (``formJsonSchemaFilename`` is the ``form``).

The engine knows only the *kinds* of declarations, never their values: which fields are
decisions, which notifications go to whom and which rules a form must meet are data.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache

from lxml import etree

NS = "urn:nd73-workflow:bpmn:1.0"
PREFIX = "nd73"
BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
XPATH_NS = {"bpmn": BPMN_NS, PREFIX: NS}
SPIFF_FORM_PROPERTY = "formJsonSchemaFilename"

# Properties of flow elements the engine reads (processes/README.md explains each).
ELEMENT_PROPERTIES = ("form", "stage", "dueDate", "dueInWorkingDays", "assigneeFrom",
                      "decisionFields", "caseDecisionField", "legalBasis", "senderRole")
# Properties of a process.
PROCESS_PROPERTIES = ("category", "proposerField", "reportTitle", "reportIssuer",
                      "reportRecipients", "startUnit")
CATEGORIES = ("case", "reporting_cycle", "called")
# ``startUnit``: whether an instance must be started for a unit (its lanes and scripts
# work from the unit), or may start without one.
START_UNITS = ("required", "optional")
# Who a notification goes to: the candidates of a task that opens, the case's proposer, the
# people who may do the task a boundary timer is attached to, or those people and their
# heads (the late people are told too, with ``to_head`` false).
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=False)
RECIPIENTS = ("candidates", "proposer", "assignee", "assignee_head")
NOTIFICATION_MOMENTS = ("open", "complete")


@dataclass(frozen=True)
class NotificationRule:
    kind: str
    to: str
    on: str = "complete"
    when: str | None = None
    title: str | None = None      # the title when the kind has no template


# the attributes of an ``nd73:document``: the official document the element's completion
# issues (engine.documents)
DOCUMENT_ATTRIBUTES = ("template", "kind", "title", "issuer", "signer", "signerFrom",
                       "authority", "when", "recipients")
AUTHORITIES = ("", "TM.", "KT.", "Q.")


@dataclass(frozen=True)
class DocumentRule:
    template: str               # a .docx of the variant's documents/ folder
    kind: str                   # the register and the kind's abbreviation: QĐ, TB, BB, TTr…
    title: str                  # trích yếu, as lists show it
    issuer: str | None = None   # the role whose agency issues it (default: the signer's)
    authority: str = ""         # TM., KT., Q. or "" (then KT. when a deputy signs)
    when: str | None = None
    recipients: str = ""        # nơi nhận, separated by ';'
    signer: str | None = None   # the role that signs (its head); default: who did the step
    signer_from: str | None = None   # or the data field naming the signer (a meeting's chair)


@dataclass(frozen=True)
class ValidationRule:
    field: str
    when: str
    message: str
    message_en: str | None = None


# --- reading the XML (deployment) ----------------------------------------------------------

def properties_of(node) -> dict[str, str]:
    """The ``nd73:property`` name → value pairs directly under ``node``'s extensions."""
    return {p.get("name"): p.get("value") or ""
            for p in node.iterfind("bpmn:extensionElements/nd73:properties/nd73:property",
                                   XPATH_NS) if p.get("name")}


def declarations_of(node) -> dict:
    """Everything ``node`` declares in the nd73 namespace, as stored in a task spec."""
    found: dict = {}
    properties = properties_of(node)
    if properties:
        found["properties"] = properties
    notifications = [{k: v for k, v in n.attrib.items()
                      if k in ("kind", "to", "on", "when", "title")}
                     for n in node.iterfind("bpmn:extensionElements/nd73:notification",
                                            XPATH_NS)]
    if notifications:
        found["notifications"] = notifications
    validations = [{"field": v.get("field") or "", "when": v.get("when") or "",
                    "message": v.get("message") or "",
                    **({"message_en": v.get("messageEn")} if v.get("messageEn") else {})}
                   for v in node.iterfind("bpmn:extensionElements/nd73:validation", XPATH_NS)]
    if validations:
        found["validations"] = validations
    documents = [{k: v for k, v in d.attrib.items() if k in DOCUMENT_ATTRIBUTES}
                 for d in node.iterfind("bpmn:extensionElements/nd73:document", XPATH_NS)]
    if documents:
        found["documents"] = documents
    return found


def document_templates(content: bytes) -> set[str]:
    """The document templates a BPMN file declares (``nd73:document template``)."""
    try:
        root = etree.fromstring(content, _PARSER)
    except etree.XMLSyntaxError:
        return set()                  # reported with its line by the BPMN checks
    return {d.get("template") for d in root.iterfind(".//nd73:document", XPATH_NS)
            if d.get("template")}


def notification_kinds(sources) -> set[str]:
    """The notification kinds the BPMN files among ``sources`` declare."""
    kinds: set[str] = set()
    for source in sources:
        if not source.name.endswith(".bpmn"):
            continue
        try:
            root = etree.fromstring(source.content, _PARSER)
        except etree.XMLSyntaxError:
            continue                  # reported with its line by the BPMN checks
        kinds.update(n.get("kind") for n in root.iterfind(".//nd73:notification", XPATH_NS)
                     if n.get("kind"))
    return kinds


def declared_elements(root) -> dict[tuple[str, str | None], dict]:
    """(process or subprocess id, element id) → declarations, for every element of a BPMN
    document that declares something."""
    found = {}
    for ext in root.iterfind(".//bpmn:extensionElements", XPATH_NS):
        element = ext.getparent()
        if etree.QName(element).localname == "process":
            continue
        owner = element.getparent()
        while owner is not None and etree.QName(owner).localname not in (
                "process", "subProcess", "transaction", "adHocSubProcess"):
            owner = owner.getparent()
        declarations = declarations_of(element)
        if declarations and owner is not None and element.get("id"):
            found[(owner.get("id"), element.get("id"))] = declarations
    return found


def attach(root, specs) -> None:
    """Copy the declarations of a BPMN document onto the task specs built from it."""
    declared = declared_elements(root)
    if not declared:
        return
    for spec in specs:
        for task_spec in spec.task_specs.values():
            element_id = getattr(task_spec, "bpmn_id", None)
            declarations = declared.get((spec.name, element_id))
            if declarations is None:
                continue
            extensions = dict(getattr(task_spec, "extensions", None) or {})
            extensions[PREFIX] = declarations
            task_spec.extensions = extensions


# --- reading a built spec (run time) -------------------------------------------------------

def _declarations(task_spec) -> dict:
    return (getattr(task_spec, "extensions", None) or {}).get(PREFIX) or {}


def element_properties(task_spec) -> dict[str, str]:
    """A task spec's properties: the nd73 ones over those of older definitions."""
    extensions = getattr(task_spec, "extensions", None) or {}
    legacy = dict(extensions.get("properties") or {})
    if SPIFF_FORM_PROPERTY in legacy:
        legacy.setdefault("form", legacy[SPIFF_FORM_PROPERTY])
    return {**legacy, **(_declarations(task_spec).get("properties") or {})}


def listed_names(text: str | None) -> tuple[str, ...]:
    """Names separated by "," or ";" (the fields or roles a property lists)."""
    return tuple(n.strip() for n in (text or "").replace(";", ",").split(",") if n.strip())


def decision_fields(task_spec) -> tuple[str, ...]:
    """The form fields of a user task recorded as decisions (for reports and the case)."""
    return listed_names(element_properties(task_spec).get("decisionFields"))


def sender_roles(task_spec) -> tuple[str, ...]:
    """The roles (comma-separated ``senderRole`` of a message catch event) whose people alone
    may send its message; empty: anyone who takes part in the instance."""
    return listed_names(element_properties(task_spec).get("senderRole"))


def case_decision_field(task_spec) -> str | None:
    """The field whose value becomes the case's latest decision, shown in lists."""
    return element_properties(task_spec).get("caseDecisionField") or None


def notifications(task_spec, on: str | None = None) -> list[NotificationRule]:
    rules = [NotificationRule(n["kind"], n.get("to") or "candidates",
                              n.get("on") or "complete", n.get("when") or None,
                              n.get("title") or None)
             for n in _declarations(task_spec).get("notifications") or []]
    return [r for r in rules if on is None or r.on == on]


def documents(task_spec) -> list[DocumentRule]:
    """The official documents an element issues when it completes."""
    return [DocumentRule(d.get("template") or "", d.get("kind") or "", d.get("title") or "",
                         d.get("issuer") or None, d.get("authority") or "",
                         d.get("when") or None, d.get("recipients") or "",
                         d.get("signer") or None, d.get("signerFrom") or None)
            for d in _declarations(task_spec).get("documents") or []]


def legal_basis(task_spec) -> str | None:
    """The Điều/khoản an element carries out (``legalBasis``)."""
    return element_properties(task_spec).get("legalBasis") or None


def validations(task_spec) -> list[ValidationRule]:
    return [ValidationRule(v["field"], v["when"], v["message"], v.get("message_en"))
            for v in _declarations(task_spec).get("validations") or []]


@lru_cache(maxsize=1024)
def free_names(expression: str) -> frozenset[str]:
    """The variables a declared condition reads. A condition is written over a form's
    fields and the task data, where a field left empty or a variable an earlier path did
    not set is simply absent: such names read as None (the sandbox checks the rest)."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        return frozenset()
    return frozenset(node.id for node in ast.walk(tree)
                     if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load))


# ``{{ expression }}`` inside a rule's message: a value shown to the user (a setting, say)
PLACEHOLDER = re.compile(r"\{\{(.+?)\}\}")


def placeholders(message: str) -> list[str]:
    return [m.strip() for m in PLACEHOLDER.findall(message or "")]


# --- process properties (from the deployed sources) ----------------------------------------

@lru_cache(maxsize=512)
def _process_properties(key: str, source: str) -> dict[str, str]:
    root = etree.fromstring(source.encode("utf-8"), _PARSER)
    for process in root.iterfind("bpmn:process", XPATH_NS):
        if process.get("id") == key:
            return properties_of(process)
    return {}


def process_properties(definition) -> dict[str, str]:
    """The nd73 properties of a deployed definition's own process (empty when none)."""
    for name, text in definition.sources.items():
        if name.endswith(".bpmn") and f'id="{definition.key}"' in text:
            found = _process_properties(definition.key, text)
            if found:
                return found
    return {}


@dataclass(frozen=True)
class StartRule:
    """Who may start a process (``nd73:startRule`` under the ``bpmn:process``): when the
    condition ``when`` (over ``started_by``, ``proposer`` and ``proposer_unit``) is true,
    the start is refused with ``message`` (``messageEn``), naming the rule ``name``."""
    name: str
    when: str
    message: str
    message_en: str | None = None


@lru_cache(maxsize=512)
def _start_rules(key: str, source: str) -> tuple[StartRule, ...]:
    root = etree.fromstring(source.encode("utf-8"), _PARSER)
    for process in root.iterfind("bpmn:process", XPATH_NS):
        if process.get("id") == key:
            return tuple(StartRule(r.get("name") or "", r.get("when") or "",
                                   r.get("message") or "", r.get("messageEn"))
                         for r in process.iterfind("bpmn:extensionElements/nd73:startRule",
                                                   XPATH_NS))
    return ()


def start_rules(definition) -> tuple[StartRule, ...]:
    """The start rules a deployed definition's own process declares."""
    for name, text in definition.sources.items():
        if name.endswith(".bpmn") and f'id="{definition.key}"' in text:
            found = _start_rules(definition.key, text)
            if found:
                return found
    return ()


def start_unit_required(definition) -> bool:
    return process_properties(definition).get("startUnit") == "required"


def category(definition) -> str | None:
    return process_properties(definition).get("category") or None


def legal_bases_of(specs) -> dict[str, str]:
    """element id → the ``legalBasis`` it declares, over a definition's specs (its own and
    its call activities')."""
    spec, subprocess_specs = specs
    found: dict[str, str] = {}
    for process_spec in (spec, *subprocess_specs.values()):
        for task_spec in process_spec.task_specs.values():
            basis = legal_basis(task_spec)
            element = getattr(task_spec, "bpmn_id", None)
            if basis and element:
                found.setdefault(element, basis)
    return found


def decision_fields_of(definition, specs) -> tuple[str, ...]:
    """Every decision field the user tasks of a definition declare (spec and call
    activities' specs), in order of first appearance."""
    spec, subprocess_specs = specs
    fields: dict[str, None] = {}
    for process_spec in (spec, *subprocess_specs.values()):
        for task_spec in process_spec.task_specs.values():
            fields.update(dict.fromkeys(decision_fields(task_spec)))
    return tuple(fields)
