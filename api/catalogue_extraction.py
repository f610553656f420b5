"""Finds the message ids of Python files for ``make translations`` (pybabel extract with
babel.cfg): the literal first argument of ``t()``, ``N_()``, ``say()``, ``gettext()`` and
``_()``, and the message codes given as ``code="..."`` (engine errors, BPMN problems, API
problems), which the standard extractor does not see."""
from __future__ import annotations

import ast
import re

CALLS = {"t", "N_", "say", "gettext", "_"}
MESSAGE_CODE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_-]+)+$")


def message_ids(source: str) -> list[tuple[int, str]]:
    """(line, message id) of every id named literally in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name in CALLS and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            found.append((node.lineno, node.args[0].value))
        for keyword in node.keywords:
            value = keyword.value
            if keyword.arg == "code" and isinstance(value, ast.Constant) \
                    and isinstance(value.value, str) and MESSAGE_CODE.match(value.value):
                found.append((value.lineno, value.value))
    return sorted(found)


def extract_python(fileobj, keywords, comment_tags, options):
    """Babel's extraction method interface: (line, function, message, comments)."""
    source = fileobj.read().decode(options.get("encoding", "utf-8"))
    for line, message in message_ids(source):
        yield line, None, message, []
