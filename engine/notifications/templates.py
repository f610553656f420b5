"""Message templates: files a process designer writes per variant, rendered in a sandbox.

A variant's ``notifications/`` folder holds, per kind of notification, up to three files:
``<kind>.subject.txt`` (subject line and in-app title), ``<kind>.txt`` (plain text, also the
in-app body) and ``<kind>.html`` (HTML part, autoescaped). A variant inherits the files of
the variants it extends, file by file, and they are deployed with its processes (as
``notifications/<file>`` sources), so a running instance keeps the wording of its version.

What several kinds say alike lives in shared parts, ``_<name>.txt`` or ``_<name>.html``
(never sent by themselves), which a template includes by file name (``{% include
"_implementation_decision.txt" %}``). A template sees only the files of its own deployed
version: the loader (:class:`VersionLoader`) knows no path, no folder and no file outside
them, so ``{% include "../../x" %}`` names nothing; deployment refuses such a name, or one
computed at run time, naming the file and the line.

Templates are untrusted input: Jinja2's SandboxedEnvironment refuses access to internals,
and a template that fails at run time falls back to a plain generic message, so wording can
never stop a workflow.
"""
from __future__ import annotations

import logging
import re
import sys
import threading
import time
from datetime import date, datetime
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from jinja2 import (BaseLoader, ChainableUndefined, TemplateNotFound, TemplateSyntaxError, meta,
                    nodes)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import escape

from ..clock import LOCAL_TZ, as_utc
from ..errors import DefinitionInvalid, Problem

log = logging.getLogger("nd73.notifications")

FOLDER = "notifications"
SOURCE_PREFIX = f"{FOLDER}/"
# Kinds the engine itself sends; every other kind is one a definition declares
# (``nd73:notification``), and its templates come with the definition.
KINDS = ("task_available", "task_assigned", "digest")
PARTS = ("subject.txt", "txt", "html")
MAX_TEMPLATE_BYTES = 64 * 1024
MAX_OUTPUT_CHARS = 100_000           # a rendered part; longer ones are refused
CPU_SECONDS = 0.5                    # per rendered part
_NAME = re.compile(r"^(?P<kind>[a-z_]+)\.(?P<part>subject\.txt|txt|html)$")
# a shared part other templates include; never sent by itself
_PART = re.compile(r"^_[a-z][a-z_]*\.(txt|html)$")

# Used when a deployment has no template for a kind (or it fails while rendering).
GENERIC = {
    "subject.txt": "[ND73] {{ title }}",
    "txt": "Kính gửi đồng chí {{ user.full_name }},\n\n{{ title }}.\n"
           "{% if instance.business_key %}Hồ sơ: {{ instance.business_key }}\n{% endif %}"
           "Xem chi tiết: {{ url }}\n",
}
GENERIC_TITLES = {
    "task_available": "Có công việc mới cần xử lý",
    "task_assigned": "Đồng chí được giao một công việc",
    "digest": "Tổng hợp thông báo trong ngày",
}
GENERIC_TITLE = "Có thông báo mới về hồ sơ"


def local_date(value) -> str:
    """dd/mm/yyyy in Asia/Ho_Chi_Minh."""
    if isinstance(value, datetime):
        value = as_utc(value).astimezone(LOCAL_TZ)
    return value.strftime("%d/%m/%Y") if isinstance(value, (date, datetime)) else ""


def local_datetime(value) -> str:
    """dd/mm/yyyy HH:MM in Asia/Ho_Chi_Minh."""
    if not isinstance(value, datetime):
        return local_date(value)
    return as_utc(value).astimezone(LOCAL_TZ).strftime("%d/%m/%Y %H:%M")


class TemplateTooCostly(Exception):
    """A template ran past its CPU budget or built too large a value."""


class _LimitedSandbox(SandboxedEnvironment):
    """The sandbox, plus a guard on ``*`` and ``**``: ``'x' * 10**9`` is refused before it
    is built (Jinja's sandbox already caps ``range``)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, int) and abs(right) > 64:
            raise SecurityError("exponent too large in a template")
        if operator == "*":
            for sized, count in ((left, right), (right, left)):
                if isinstance(sized, (str, list, tuple)) and isinstance(count, int) \
                        and len(sized) * count > MAX_OUTPUT_CHARS:
                    raise SecurityError("value too large in a template")
        return super().call_binop(context, operator, left, right)


# What a template may hold and still render without the CPU budget's trace: substitutions,
# conditions and cheap filters of values. None of these nodes loops, calls, assigns, includes
# or multiplies, so such a template's work is bounded by its own length and the size of the
# values it shows; the trace, which costs every Python call made while rendering (most of a
# notification's CPU), guards only templates that could run on.
_SIMPLE_NODES = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.Const, nodes.Name,
                 nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Test, nodes.If,
                 nodes.CondExpr, nodes.And, nodes.Or, nodes.Not, nodes.Compare,
                 nodes.Operand, nodes.Concat, nodes.Keyword)
# filters whose cost is linear in the value they get and whose output is no larger than it
# (or than a constant of the template): not join, replace, center, indent, format, ...
_SIMPLE_FILTERS = frozenset({"date", "datetime", "e", "escape", "forceescape", "safe",
                             "string", "upper", "lower", "title", "capitalize", "trim",
                             "default", "d", "length", "count", "first", "last", "abs"})
_SIMPLE_TESTS = frozenset({"defined", "undefined", "none", "true", "false", "boolean",
                           "string", "number", "integer", "float", "mapping", "sequence",
                           "eq", "ne", "equalto", "sameas"})


def is_simple(parsed: nodes.Template) -> bool:
    """Whether a parsed template only substitutes, tests and filters values
    (:data:`_SIMPLE_NODES`, with filters and tests of the allowed lists): it cannot loop,
    so it renders without the CPU budget's trace. Anything else (``{% set %}``, ``{% for
    %}``, a call, an include, arithmetic) keeps the trace."""
    for node in parsed.find_all(nodes.Node):
        if type(node) not in _SIMPLE_NODES:
            return False
        if isinstance(node, nodes.Filter) and node.name not in _SIMPLE_FILTERS:
            return False
        if isinstance(node, nodes.Test) and node.name not in _SIMPLE_TESTS:
            return False
    return True


class _Compiled:
    """A compiled template, and whether it renders without the trace (:func:`is_simple`)."""

    __slots__ = ("template", "simple", "globals")

    def __init__(self, env: SandboxedEnvironment, text: str):
        parsed = env.parse(text)
        self.simple = is_simple(parsed)
        self.template = env.from_string(parsed)
        self.globals = dict(self.template.globals)

    def generate(self, context: dict) -> Iterator[str]:
        """``template.generate(context)``, the template's globals copied once, not at every
        render (jinja2 merges them into each render's variables from a ChainMap, read key
        by key in Python: two fifths of rendering a short notification)."""
        template = self.template
        try:
            yield from template.root_render_func(
                template.new_context({**self.globals, **context}, shared=True))
        except Exception:
            yield template.environment.handle_exception()


def _render_limited(compiled: _Compiled, context: dict, traced: bool = True) -> str:
    """Render with a cap on the output and, when ``traced``, a CPU budget (a trace on the
    template's own frames, like the script sandbox)."""
    if not traced:
        return _capped(compiled.generate(context))
    deadline = time.thread_time() + CPU_SECONDS

    def local_trace(frame, event, arg):
        if time.thread_time() > deadline:
            raise TemplateTooCostly(f"the template ran longer than {CPU_SECONDS} s of CPU")
        return local_trace

    def global_trace(frame, event, arg):
        return local_trace if frame.f_code.co_filename == "<template>" else None

    previous = sys.gettrace()
    sys.settrace(global_trace)
    try:
        return _capped(compiled.generate(context))
    finally:
        sys.settrace(previous)


def _capped(generated: Iterable[str]) -> str:
    """The pieces a template generates, joined; stops early, before memory runs out, past
    :data:`MAX_OUTPUT_CHARS`."""
    pieces, size = [], 0
    for piece in generated:
        size += len(piece)
        if size > MAX_OUTPUT_CHARS:
            raise TemplateTooCostly(f"the template produced more than {MAX_OUTPUT_CHARS} "
                                    f"characters")
        pieces.append(piece)
    return "".join(pieces)


def is_shared_part(name: str) -> bool:
    """Whether ``name`` is a shared part (``_<name>.txt``, ``_<name>.html``)."""
    return _PART.match(name) is not None


def _include_refused(name) -> str:
    return (f"include {name!r}: a notification template includes only the shared parts "
            "of its own variant, by file name (_<name>.txt or _<name>.html in its "
            "notifications folder)")


class VersionLoader(BaseLoader):
    """The templates ``{% include %}`` may reach: the shared parts of one deployed version,
    by file name. It reads no file and knows no folder: any other name (a path, ``..``, a
    kind's template, a part the version lacks) is refused with :class:`TemplateNotFound`."""

    def __init__(self, templates: Mapping[str, str]):
        self._parts = {n: t for n, t in templates.items() if is_shared_part(n)}

    def get_source(self, environment, template):
        text = self._parts.get(template) if isinstance(template, str) else None
        if text is None:
            raise TemplateNotFound(template, _include_refused(template))
        # no file name: the CPU budget's trace counts the part's frames as the template's
        return text, None, lambda: True


def _environment(autoescape: bool, loader: BaseLoader | None = None) -> SandboxedEnvironment:
    env = _LimitedSandbox(autoescape=autoescape, undefined=ChainableUndefined,
                          keep_trailing_newline=True, loader=loader or VersionLoader({}))
    env.filters["date"] = local_date
    env.filters["datetime"] = local_datetime
    return env


_TEXT = _environment(False)
_HTML = _environment(True)


def _env_for(name: str) -> SandboxedEnvironment:
    return _HTML if name.endswith(".html") else _TEXT


def is_template_name(name: str, declared: Iterable[str] | None = None) -> bool:
    """Whether ``name`` is a template's file name; with ``declared`` (the kinds a
    deployment's BPMN declares), of a kind that is sent."""
    if is_shared_part(name):
        return True
    match = _NAME.match(name)
    return match is not None and (declared is None or match["kind"] in KINDS
                                  or match["kind"] in set(declared))


def check(templates: Mapping[str, bytes], declared: Iterable[str] | None = None
          ) -> list[Problem]:
    """Problems of a set of template files (name → content): unknown names, encodings,
    sizes and syntax errors, each with its file and line. With ``declared`` (the kinds the
    deployment's BPMN declares), a template of any other kind is refused as well."""
    problems = []
    known = None if declared is None else set(KINDS) | set(declared)
    for name, content in sorted(templates.items()):
        label = SOURCE_PREFIX + name
        match = None if is_shared_part(name) else _NAME.match(name)
        if match is not None and known is not None and match["kind"] not in known:
            problems.append(Problem(label, f"no notification of kind '{match['kind']}' is "
                                           "sent: the engine sends " + ", ".join(KINDS)
                                           + ", the BPMN declares " + (", ".join(
                                               sorted(set(declared or ()))) or "none"),
                                    code="template.unknown_kind",
                                    params={"kind": match["kind"]}))
            continue
        if not is_template_name(name):
            problems.append(Problem(label, "a notification template is named <kind>.subject."
                                           "txt, <kind>.txt or <kind>.html, the kind in "
                                           "lower-case letters and '_' (the engine's own: "
                                    + ", ".join(KINDS) + "; others as the BPMN declares), "
                                    "a shared part _<name>.txt or _<name>.html",
                                    code="template.name"))
            continue
        if len(content) > MAX_TEMPLATE_BYTES:
            problems.append(Problem(label, f"larger than {MAX_TEMPLATE_BYTES // 1024} KB",
                                    code="template.too_large",
                                    params={"limit_kb": MAX_TEMPLATE_BYTES // 1024}))
            continue
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(Problem(label, "not UTF-8 text", code="template.not_utf8"))
            continue
        try:
            parsed = _env_for(name).parse(text)
        except TemplateSyntaxError as exc:
            problems.append(Problem(label, f"template syntax: {exc.message}", line=exc.lineno,
                                    code="template.syntax", params={"detail": exc.message}))
            continue
        problems += _include_problems(label, text, parsed, templates)
    return problems


def _include_problems(label: str, text: str, parsed, templates: Mapping[str, bytes]
                      ) -> list[Problem]:
    """An ``include`` (``import``, ``extends``) names, literally, a shared part of the same
    set of templates; anything else is refused, with the line it is on."""
    problems = []
    for name in meta.find_referenced_templates(parsed):
        if isinstance(name, str) and is_shared_part(name) and name in templates:
            continue
        shown = name if name is not None else "(a name computed while rendering)"
        quoted = re.escape(f'"{name}"') + "|" + re.escape(f"'{name}'") if name else None
        line = next((number for number, row in enumerate(text.splitlines(), 1)
                     if quoted and re.search(quoted, row)), None)
        problems.append(Problem(label, _include_refused(shown), line=line,
                                code="template.include", params={"name": shown}))
    return problems


def validate(templates: Mapping[str, bytes], declared: Iterable[str] | None = None) -> None:
    problems = check(templates, declared)
    if problems:
        raise DefinitionInvalid(problems)


def load_folder_chain(folders: Iterable[Path]) -> dict[str, bytes]:
    """Template files of a variant: ``folders`` from the most general (national) to the
    variant itself; a later folder's file replaces an earlier one of the same name."""
    templates: dict[str, bytes] = {}
    for folder in folders:
        directory = Path(folder) / FOLDER
        if directory.is_dir():
            templates.update({p.name: p.read_bytes() for p in sorted(directory.iterdir())
                              if p.is_file() and not p.name.startswith(".")})
    return templates


def from_sources(sources: Mapping[str, str]) -> dict[str, str]:
    """The templates deployed with a definition (its ``notifications/`` sources)."""
    return {n[len(SOURCE_PREFIX):]: t for n, t in sources.items() if n.startswith(SOURCE_PREFIX)}


class Renderer:
    """Renders (subject, text, html) of a kind with the templates of one deployed version;
    compiled templates are cached per version (versions never change)."""

    def __init__(self):
        self._cache: dict[tuple, _Compiled] = {}
        # per version: its text and HTML environments, whose loader holds its shared parts
        self._environments: dict[object, tuple[SandboxedEnvironment, SandboxedEnvironment]] = {}
        self._lock = threading.Lock()

    def _environment(self, key, templates: Mapping[str, str], name: str
                     ) -> SandboxedEnvironment:
        pair = self._environments.get(key)
        if pair is None:
            loader = VersionLoader(templates)
            pair = self._environments[key] = (_environment(False, loader),
                                              _environment(True, loader))
        return pair[1] if name.endswith(".html") else pair[0]

    def _template(self, key, name: str, text: str, templates: Mapping[str, str] | None = None
                  ) -> _Compiled:
        cache_key = (key, name)
        compiled = self._cache.get(cache_key)
        if compiled is None:
            with self._lock:
                env = (_env_for(name) if templates is None
                       else self._environment(key, templates, name))
                compiled = _Compiled(env, text)
                self._cache[cache_key] = compiled
        return compiled

    def render(self, version_key, templates: Mapping[str, str], kind: str,
               context: dict, *, html: bool = True) -> tuple[str, str, str | None]:
        """The subject, text and HTML of a notification of ``kind``; ``html=False``: no
        HTML part (None), for a notification sent as no e-mail of its own (in-app, or in a
        digest later), whose HTML nothing would read."""
        context = {"title": GENERIC_TITLES.get(kind, GENERIC_TITLE), "kind": kind, **context}
        parts = {}
        for part in PARTS if html else PARTS[:2]:
            name = f"{kind}.{part}"
            try:
                if name in templates:
                    compiled = self._template(version_key, name, templates[name], templates)
                    parts[part] = _render_limited(compiled, context,
                                                  traced=not compiled.simple)
                    continue
            except Exception as exc:          # noqa: BLE001 - wording never stops a workflow
                log.warning("notification template %s failed (%s: %s); using the generic one",
                            name, type(exc).__name__, exc)
            if part == "html":
                parts[part] = _html_from_text(parts["txt"])
            else:
                parts[part] = "".join(self._template(None, f"generic.{part}", GENERIC[part]
                                                     ).generate(context))
        subject = " ".join(parts["subject.txt"].split())[:255] or context["title"]
        return subject, tidy_text(parts["txt"]), parts.get("html")


def tidy_text(text: str) -> str:
    """Plain text without trailing spaces and without the runs of blank lines that
    conditions which rendered nothing leave behind."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def _html_from_text(text: str) -> str:
    paragraphs = "".join(f"<p>{escape(block).replace(chr(10), '<br>')}</p>"
                         for block in text.strip().split("\n\n"))
    return f"<!DOCTYPE html><html lang=\"vi\"><body>{paragraphs}</body></html>"
