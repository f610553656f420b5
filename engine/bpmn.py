"""Reading untrusted BPMN: safe XML parsing, validation and spec building.

Every problem found becomes a :class:`~engine.errors.Problem` naming the file, the element id
and the line, so a process designer can find it in the modeler. Nothing here touches the
database.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser

from . import policy
from .errors import N_, DefinitionInvalid, Problem
from .org import POSITIONS
from .roles import declared_roles
from .sandbox import SandboxViolation, check_code
from .scripting import adopt_engine_timers
from .variants import SourceFile

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_FILES = 200
BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
NS = {"bpmn": BPMN_NS, "spiffworkflow": SPIFF_NS, policy.PREFIX: policy.NS}

# Designer code inside BPMN, with the mode it is compiled in.
_CODE_XPATHS = (
    (".//bpmn:scriptTask/bpmn:script", "exec"),
    (".//spiffworkflow:preScript", "exec"),
    (".//spiffworkflow:postScript", "exec"),
    (".//bpmn:conditionExpression", "eval"),
    (".//bpmn:condition", "eval"),
    (".//bpmn:timeDate", "eval"),
    (".//bpmn:timeDuration", "eval"),
    (".//bpmn:timeCycle", "eval"),
    (".//bpmn:completionCondition", "eval"),
    (".//bpmn:loopCardinality", "eval"),
    (".//nd73:notification/@when", "eval"),
    (".//nd73:validation/@when", "eval"),
    (".//nd73:startRule/@when", "eval"),
    (".//nd73:document/@when", "eval"),
)
# Properties whose value names a form, and whose value is a stage (either namespace).
_FORM_XPATHS = (".//nd73:property[@name='form']",
                ".//spiffworkflow:property[@name='formJsonSchemaFilename']")
_STAGE_XPATHS = (".//nd73:property[@name='stage']", ".//spiffworkflow:property[@name='stage']")


@dataclass
class ParsedFile:
    name: str
    content: bytes
    root: etree._Element
    lines: dict[str, int] = field(default_factory=dict)   # element id -> line

    @property
    def process_ids(self) -> list[str]:
        return [p.get("id") for p in self.root.iterfind("bpmn:process", NS)]


@dataclass
class BuiltProcess:
    key: str
    name: str | None
    spec: object
    subprocess_specs: dict
    files: list[ParsedFile]
    extra: dict[str, bytes] = field(default_factory=dict)   # settings and forms it uses

    @property
    def sources(self) -> dict[str, str]:
        texts = {f.name: f.content for f in self.files}
        texts.update(self.extra)
        return {name: content.decode("utf-8") for name, content in sorted(texts.items())}

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256()
        for name, text in self.sources.items():
            digest.update(name.encode() + b"\0" + text.encode() + b"\0")
        return digest.hexdigest()


def _safe_name(name: str) -> str:
    base = Path(name.replace("\\", "/")).name
    # a colon makes a drive-relative path on Windows (C:name), should files ever be written
    if not base or base != name or base.startswith(".") or ":" in base:
        raise DefinitionInvalid([Problem(name, "file names must be plain names, not paths",
                                         code="bpmn.file_name")])
    return base


_XML_PARSER_OPTIONS = dict(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_blank_text=False)


def parse_file(source: SourceFile, max_bytes: int = MAX_FILE_BYTES) -> ParsedFile:
    """Parse one BPMN file, refusing DTDs, entities, external references and oversize."""
    name = _safe_name(source.name)
    if len(source.content) > max_bytes:
        raise DefinitionInvalid([Problem(
            name, f"file is {len(source.content):,} bytes; the limit is {max_bytes:,} bytes",
            code="bpmn.file_too_large", params={"limit": max_bytes})])
    head = source.content[:4096].lower()
    if b"<!doctype" in source.content.lower() or b"<!entity" in head:
        line = source.content[:source.content.lower().find(b"<!doctype")].count(b"\n") + 1
        raise DefinitionInvalid([Problem(
            name, "DTDs and entity declarations are not allowed in BPMN files", line=line,
            code="bpmn.dtd")])
    parser = etree.XMLParser(**_XML_PARSER_OPTIONS)
    try:
        root = etree.fromstring(source.content, parser)
    except etree.XMLSyntaxError as exc:
        raise DefinitionInvalid([Problem(name, f"not well-formed XML: {exc.msg}",
                                         line=exc.lineno, code="bpmn.not_xml",
                                         params={"detail": exc.msg})]) from None
    if root.getroottree().docinfo.internalDTD is not None or root.getroottree().docinfo.doctype:
        raise DefinitionInvalid([Problem(name, "DTDs are not allowed in BPMN files", line=1,
                                         code="bpmn.dtd")])
    outside = [*root.itersiblings(preceding=True), *root.itersiblings()]
    for node in [*outside, *root.iter(etree.Entity, etree.ProcessingInstruction)]:
        if isinstance(node, etree._Comment):
            continue
        raise DefinitionInvalid([Problem(
            name, "entities and processing instructions are not allowed",
            line=node.sourceline, code="bpmn.entities")])
    if root.tag not in (f"{{{BPMN_NS}}}definitions",
                        "{https://www.omg.org/spec/DMN/20191111/MODEL/}definitions",
                        "{http://www.omg.org/spec/DMN/20151101/dmn.xsd}definitions"):
        raise DefinitionInvalid([Problem(
            name, f"the root element must be bpmn:definitions, not {etree.QName(root).localname}",
            line=root.sourceline, code="bpmn.root",
            params={"element": etree.QName(root).localname})])
    lines = {el.get("id"): el.sourceline for el in root.iter() if isinstance(el.tag, str)
             and el.get("id")}
    return ParsedFile(name, source.content, root, lines)


def _enclosing_id(node) -> str | None:
    """The id of the nearest element a designer sees (event definitions are not shown)."""
    while node is not None:
        if node.get("id") and not etree.QName(node).localname.endswith("EventDefinition"):
            return node.get("id")
        node = node.getparent()
    return None


def _static_problems(files: list[ParsedFile], roles: tuple[str, ...],
                     stages: tuple[str, ...]) -> list[Problem]:
    """Checks SpiffWorkflow does not make: start events, call targets, sandboxed code."""
    problems: list[Problem] = []
    known = {pid for f in files for pid in f.process_ids}
    for f in files:
        for process in f.root.iterfind("bpmn:process", NS):
            pid = process.get("id")
            if process.find("bpmn:startEvent", NS) is None:
                problems.append(Problem(f.name, f"process '{pid}' has no start event",
                                        element_id=pid, line=process.sourceline,
                                        code="bpmn.no_start", params={"process": pid}))
        for process in f.root.iterfind("bpmn:process", NS):
            ids = {el.get("id") for el in process.iter() if isinstance(el.tag, str)}
            for flow in process.iterfind(".//bpmn:sequenceFlow", NS):
                for end in ("sourceRef", "targetRef"):
                    if flow.get(end) not in ids:
                        problems.append(Problem(
                            f.name, f"sequence flow {end} '{flow.get(end)}' names no element "
                                    "of the process", element_id=flow.get("id"),
                            line=flow.sourceline, code="bpmn.flow_end",
                            params={"element": flow.get(end)}))
        for lane in f.root.iterfind(".//bpmn:lane", NS):
            if (lane.get("name") or "") not in roles:
                problems.append(Problem(
                    f.name, f"lane '{lane.get('name')}' names no role of the variant's "
                            "[roles] nor a position; use one of: " + ", ".join(roles),
                    element_id=lane.get("id"), line=lane.sourceline, code="bpmn.lane_role",
                    params={"lane": lane.get("name") or "", "known": ", ".join(roles)}))
        for prop in f.root.iterfind(".//nd73:property[@name='senderRole']", NS):
            for role in policy.listed_names(prop.get("value")) or ("",):
                if role not in roles:
                    problems.append(Problem(
                        f.name, f"senderRole '{role}' names no role of the variant's [roles] "
                                "nor a position; use one of: " + ", ".join(roles),
                        element_id=_enclosing_id(prop), line=prop.sourceline,
                        code="bpmn.sender_role", params={"role": role,
                                                         "known": ", ".join(roles)}))
        for prop in (p for xpath in _STAGE_XPATHS for p in f.root.iterfind(xpath, NS)):
            if prop.get("value") not in stages:
                problems.append(Problem(
                    f.name, f"stage '{prop.get('value')}' is not in the variant's [stages]: "
                            + ", ".join(stages), element_id=_enclosing_id(prop),
                    line=prop.sourceline, code="bpmn.stage",
                    params={"stage": prop.get("value") or "", "known": ", ".join(stages)}))
        problems.extend(_declaration_problems(f))
        for call in f.root.iterfind(".//bpmn:callActivity", NS):
            target = call.get("calledElement")
            if target not in known:
                problems.append(Problem(
                    f.name, f"call activity calls unknown process '{target}'",
                    element_id=call.get("id"), line=call.sourceline, code="bpmn.call_target",
                    params={"process": target or ""}))
        problems.extend(_recursive_calls(f))
        for xpath, mode in _CODE_XPATHS:
            attribute = xpath.rsplit("/@", 1)[1] if "/@" in xpath else None
            for node in f.root.iterfind(xpath.rsplit("/@", 1)[0], NS):
                text = ((node.get(attribute) if attribute else node.text) or "").strip()
                if not text:
                    continue
                try:
                    check_code(text, mode)
                except SandboxViolation as exc:
                    label = etree.QName(node).localname + (f".{attribute}" if attribute else "")
                    problems.append(Problem(f.name, f"{label}: {exc}",
                                            element_id=_enclosing_id(node),
                                            line=node.sourceline, code="bpmn.code_refused",
                                            params={"detail": str(exc)}))
    return problems


def _declaration_problems(f: ParsedFile) -> list[Problem]:
    """nd73 declarations the engine would not understand: unknown property names, a
    notification without a kind or to unknown recipients, a rule naming no field, an
    unknown process category."""
    problems = []

    def problem(node, message, code, **params):
        problems.append(Problem(f.name, message, element_id=_enclosing_id(node),
                                line=node.sourceline, code=code, params=params))

    for prop in f.root.iterfind(".//nd73:property", NS):
        owner = prop.getparent().getparent().getparent()
        is_process = etree.QName(owner).localname == "process"
        known = policy.PROCESS_PROPERTIES if is_process else policy.ELEMENT_PROPERTIES
        if prop.get("name") not in known:
            problem(prop, f"property '{prop.get('name')}' is not one the engine reads here; "
                          "use one of: " + ", ".join(known), N_("bpmn.property"),
                    name=prop.get("name") or "", known=", ".join(known))
        elif is_process and prop.get("name") == "category" \
                and prop.get("value") not in policy.CATEGORIES:
            problem(prop, f"category '{prop.get('value')}' is not one of: "
                          + ", ".join(policy.CATEGORIES), N_("bpmn.property_value"),
                    name="category", value=prop.get("value") or "",
                    known=", ".join(policy.CATEGORIES))
        elif is_process and prop.get("name") == "startUnit" \
                and prop.get("value") not in policy.START_UNITS:
            problem(prop, f"startUnit '{prop.get('value')}' is not one of: "
                          + ", ".join(policy.START_UNITS), N_("bpmn.property_value"),
                    name="startUnit", value=prop.get("value") or "",
                    known=", ".join(policy.START_UNITS))
    for rule in f.root.iterfind(".//nd73:notification", NS):
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", rule.get("kind") or ""):
            problem(rule, f"notification kind '{rule.get('kind') or ''}' must be a name of "
                          "lower-case letters, digits and '_' (its templates' file name)",
                    N_("bpmn.notification_kind"), kind=rule.get("kind") or "")
        if (rule.get("to") or "candidates") not in policy.RECIPIENTS:
            problem(rule, f"notification recipients '{rule.get('to')}' are not one of: "
                          + ", ".join(policy.RECIPIENTS), N_("bpmn.attribute_value"),
                    name="to", value=rule.get("to") or "", known=", ".join(policy.RECIPIENTS))
        if (rule.get("on") or "complete") not in policy.NOTIFICATION_MOMENTS:
            problem(rule, f"notification moment '{rule.get('on')}' is not one of: "
                          + ", ".join(policy.NOTIFICATION_MOMENTS), N_("bpmn.attribute_value"),
                    name="on", value=rule.get("on") or "",
                    known=", ".join(policy.NOTIFICATION_MOMENTS))
    for rule in f.root.iterfind(".//nd73:validation", NS):
        for attribute in ("field", "when", "message"):
            if not (rule.get(attribute) or "").strip():
                problem(rule, f"validation rule without '{attribute}'",
                        N_("bpmn.rule_attribute"), name=attribute)
        for attribute in ("message", "messageEn"):
            for expression in policy.placeholders(rule.get(attribute) or ""):
                try:
                    check_code(expression, "eval")
                except SandboxViolation as exc:
                    problem(rule, f"validation.{attribute}: {exc}", N_("bpmn.code_refused"),
                            detail=str(exc))
    for rule in f.root.iterfind(".//nd73:startRule", NS):
        if etree.QName(rule.getparent().getparent()).localname != "process":
            problem(rule, "a start rule belongs to a process, not to one of its elements",
                    N_("bpmn.start_rule_place"))
        for attribute in ("name", "when", "message"):
            if not (rule.get(attribute) or "").strip():
                problem(rule, f"start rule without '{attribute}'",
                        N_("bpmn.start_rule_attribute"), name=attribute)
    for rule in f.root.iterfind(".//nd73:document", NS):
        for attribute in ("template", "kind", "title"):
            if not (rule.get(attribute) or "").strip():
                problem(rule, f"document without '{attribute}'",
                        N_("bpmn.document_attribute"), name=attribute)
        template = rule.get("template") or ""
        if template and not re.fullmatch(r"[A-Za-z0-9_.-]{1,120}\.docx", template):
            problem(rule, f"document template '{template}' must be a .docx file name of "
                          "letters, digits, '_', '-' and '.'", N_("bpmn.attribute_value"),
                    name="template", value=template, known="<name>.docx")
        if len(rule.get("kind") or "") > 16:
            problem(rule, "document kind is longer than 16 characters",
                    N_("bpmn.attribute_value"), name="kind", value=rule.get("kind") or "",
                    known="QĐ, TB, BB, TTr, CV…")
        if (rule.get("authority") or "") not in policy.AUTHORITIES:
            problem(rule, f"document authority '{rule.get('authority')}' is not one of: "
                          "TM., KT., Q.", N_("bpmn.attribute_value"), name="authority",
                    value=rule.get("authority") or "", known="TM., KT., Q.")
    return problems


def _recursive_calls(f: ParsedFile) -> list[Problem]:
    """Call activities that lead back to their own process: each instance would start a
    subprocess that starts another, without end (the engine does not unfold recursion)."""
    calls: dict[str, list] = {}
    for process in f.root.iterfind("bpmn:process", NS):
        calls[process.get("id")] = list(process.iterfind(".//bpmn:callActivity", NS))
    problems = []
    for pid, activities in calls.items():
        for call in activities:
            path, todo = {call.get("calledElement"): [pid]}, [call.get("calledElement")]
            seen = set()
            while todo:
                current = todo.pop()
                if current == pid:
                    chain = " → ".join([*path[current], pid])
                    problems.append(Problem(
                        f.name, f"call activity '{call.get('id')}' calls itself ({chain}); "
                                "recursive calls are not allowed", element_id=call.get("id"),
                        line=call.sourceline, code="bpmn.recursive_call",
                        params={"chain": chain}))
                    break
                if current in seen:
                    continue
                seen.add(current)
                for inner in calls.get(current, ()):
                    target = inner.get("calledElement")
                    path.setdefault(target, [*path[current], current])
                    todo.append(target)
    return problems


def _problem_from(exc: SpiffWorkflowException, files: list[ParsedFile]) -> Problem:
    element_id = getattr(exc, "id", None) or None
    file_name = getattr(exc, "file_name", None) or ""
    line = getattr(exc, "line_number", None) or None
    if element_id and not line:
        for f in files:
            if element_id in f.lines and (not file_name or f.name == file_name):
                file_name, line = f.name, f.lines[element_id]
                break
    message = exc.args[0] if exc.args else str(exc)
    return Problem(file_name or "(definitions)", str(message), element_id=element_id,
                   line=int(line) if line else None, code="bpmn.refused",
                   params={"detail": str(message)})


def _form_problems(files: list[ParsedFile], forms: dict[str, bytes]) -> list[Problem]:
    problems = []
    for f in files:
        for prop in (p for xpath in _FORM_XPATHS for p in f.root.iterfind(xpath, NS)):
            name = prop.get("value", "")
            task = prop.getparent().getparent().getparent()
            where = dict(element_id=task.get("id"), line=prop.sourceline)
            if name not in forms:
                problems.append(Problem(f.name, f"form '{name}' does not exist in forms/",
                                        code="bpmn.form_missing", params={"form": name},
                                        **where))
                continue
            try:
                schema = json.loads(forms[name])
                Draft202012Validator.check_schema(schema)
            except (ValueError, SchemaError, RecursionError) as exc:
                message = getattr(exc, "message", str(exc))
                problems.append(Problem(f.name, f"form '{name}' is not a valid JSON Schema: "
                                                f"{message}", code="bpmn.form_schema",
                                        params={"form": name, "detail": message}, **where))
                continue
            for message in unsafe_schema(schema):
                problems.append(Problem(f.name, f"form '{name}': {message}",
                                        code="bpmn.form_unsafe",
                                        params={"form": name, "detail": message}, **where))
    return problems


# A group that repeats and holds a repetition itself, as in (a+)+ or (a|aa)*: Python's
# regular expressions backtrack exponentially on such patterns, outside any CPU budget.
_NESTED_REPEAT = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*[+*{]"
                            r"|\((?:[^()\\]|\\.)*\|(?:[^()\\]|\\.)*\)\s*[+*{]")
MAX_PATTERN = 500


def unsafe_schema(schema) -> list[str]:
    """What in a form's schema would let a designer hang the server or reach outside:
    patterns that backtrack without end, and references to other documents."""
    found, todo = [], [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, list):
            todo.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        patterns = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        if isinstance(node.get("patternProperties"), dict):
            patterns += list(node["patternProperties"])
        for pattern in patterns:
            if len(pattern) > MAX_PATTERN:
                found.append(f"pattern longer than {MAX_PATTERN} characters")
            elif _NESTED_REPEAT.search(pattern):
                found.append(f"pattern {pattern!r} repeats a repetition, which can take "
                             "for ever to check; simplify it")
        for key in ("$ref", "$dynamicRef"):
            if isinstance(node.get(key), str) and not node[key].startswith("#"):
                found.append(f"{key} {node[key][:80]!r} refers outside the form; only "
                             "references inside it ('#/...') are allowed")
        todo.extend(v for k, v in node.items() if k not in ("const", "enum", "default",
                                                             "examples"))
    return found


def forms_used(process: "BuiltProcess") -> set[str]:
    names = set()
    for spec in (process.spec, *process.subprocess_specs.values()):
        for task_spec in spec.task_specs.values():
            form = policy.element_properties(task_spec).get("form")
            if form:
                names.add(form)
    return names


def build_processes(sources: list[SourceFile], max_bytes: int = MAX_FILE_BYTES,
                    forms: dict[str, bytes] | None = None,
                    settings: dict | None = None) -> list[BuiltProcess]:
    """Parse and validate a set of files; return every process or raise DefinitionInvalid.

    With ``forms`` (name → JSON Schema text), every form a user task names must exist and be
    a valid JSON Schema; the forms a process uses are deployed with it. Lanes name a role
    the ``settings`` declare (``[roles]``), ``proposer`` or a position; stages are those
    the settings declare (``[stages]``).
    """
    if len(sources) > MAX_FILES:
        raise DefinitionInvalid([Problem("(upload)", f"more than {MAX_FILES} files",
                                         code="bpmn.too_many_files",
                                         params={"limit": MAX_FILES})])
    problems: list[Problem] = []
    files: list[ParsedFile] = []
    for source in sources:
        try:
            files.append(parse_file(source, max_bytes))
        except DefinitionInvalid as exc:
            problems.extend(exc.problems)
    if problems:
        raise DefinitionInvalid(problems)
    if not any(f.process_ids for f in files):
        raise DefinitionInvalid([Problem(f.name if files else "(upload)",
                                         "no BPMN process found", code="bpmn.no_process")
                                 for f in files[:1]]
                                or [Problem("(upload)", "no BPMN files",
                                            code="bpmn.no_files")])

    parser = SpiffBpmnParser(validator=VALIDATOR)
    owner: dict[str, ParsedFile] = {}
    for f in files:
        try:
            if f.root.tag == f"{{{BPMN_NS}}}definitions":
                parser.add_bpmn_xml(f.root, filename=f.name)
            else:
                parser.add_dmn_xml(f.root, filename=f.name)
        except ValidationException as exc:
            problems.append(_problem_from(exc, files))
        for pid in f.process_ids:
            owner.setdefault(pid, f)
    roles = tuple(dict.fromkeys(
        (*declared_roles(settings or {}), "proposer", *POSITIONS)))
    stages = tuple((settings or {}).get("stages") or {})
    problems.extend(_static_problems(files, roles, stages))
    if forms is not None:
        problems.extend(_form_problems(files, forms))
    if problems:
        raise DefinitionInvalid(problems)

    built: list[BuiltProcess] = []
    for f in files:
        for process in f.root.iterfind("bpmn:process", NS):
            pid = process.get("id")
            try:
                spec = parser.get_spec(pid)
                subprocess_specs = parser.get_subprocess_specs(pid)
            except ValidationException as exc:
                problems.append(_problem_from(exc, files))
                continue
            except (RecursionError, SpiffWorkflowException, KeyError, ValueError) as exc:
                problems.append(Problem(f.name, f"cannot build process '{pid}': {exc}",
                                        element_id=pid, line=process.sourceline,
                                        code="bpmn.cannot_build",
                                        params={"process": pid, "detail": str(exc)}))
                continue
            adopt_engine_timers(spec, *subprocess_specs.values())
            used = {f.name: f}
            for name in subprocess_specs:
                if name in owner:
                    used[owner[name].name] = owner[name]
            for used_file in used.values():
                policy.attach(used_file.root, [spec, *subprocess_specs.values()])
            process_built = BuiltProcess(pid, process.get("name"), spec, subprocess_specs,
                                         list(used.values()))
            if forms is not None:
                process_built.extra = {f"forms/{name}": forms[name]
                                       for name in sorted(forms_used(process_built))}
            built.append(process_built)
    if problems:
        raise DefinitionInvalid(problems)
    return built
