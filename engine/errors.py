"""Errors the engine reports to its callers.

Each error says what was wrong and where, in words a process designer or an official can act
on; the API maps the classes to HTTP status codes. An error people see may also carry a message
``code`` and its ``params``: the web app and the API's field errors say it in the reader's
language from the catalogues (api/translations), the English ``message`` stays for logs and
the API's ``detail``.
"""
from __future__ import annotations

from dataclasses import dataclass, asdict


def N_(code: str) -> str:
    """Marks a message code written outside a ``code=`` argument, so that ``make
    translations`` finds it (see api/catalogue_extraction.py)."""
    return code


class EngineError(Exception):
    """Base class: a request the engine refused, with a message for people."""

    code = "engine_error"

    def __init__(self, message: str, *, code: str | None = None, params: dict | None = None,
                 **details):
        super().__init__(message)
        self.message = message
        self.message_code = code          # a message id of the catalogues, e.g. task.not_found
        self.params = dict(params or {})
        self.details = details

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, **self.details}


class NotFound(EngineError):
    code = "not_found"


class Forbidden(EngineError):
    """The principal may see what they act on but may not do this to it; ``rule`` names the
    rule that refuses it (what they may not see is :class:`NotFound` instead)."""

    code = "forbidden"

    def __init__(self, message: str, *, rule: str, **details):
        # the rule is the refusal's message code, its details the params (api/ui/i18n.py)
        super().__init__(message, code=f"refused.{rule}", params=details, rule=rule,
                         **details)
        self.rule = rule


class Conflict(EngineError):
    """Someone else changed the instance first (optimistic version check lost)."""

    code = "conflict"


class InvalidState(EngineError):
    """The action does not apply to the instance or task in its current state."""

    code = "invalid_state"


class Unavailable(EngineError):
    """A service the request needs (the PDF converter) failed or is missing; try later."""

    code = "unavailable"


class InvalidData(EngineError):
    """Task or start data was refused (not JSON, too large, reserved names...)."""

    code = "invalid_data"


@dataclass(frozen=True)
class Problem:
    """One validation finding, located in a file."""

    file: str
    message: str
    element_id: str | None = None
    line: int | None = None
    code: str | None = None           # a message id of the catalogues, with its params
    params: dict | None = None

    def to_dict(self) -> dict:
        found = asdict(self)
        return {k: v for k, v in found.items() if v is not None or k not in ("code", "params")}

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}"
        if self.element_id:
            where += f" [{self.element_id}]"
        return f"{where}: {self.message}"


class DefinitionInvalid(EngineError):
    """A BPMN deployment was refused; ``problems`` lists every finding."""

    code = "definition_invalid"

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        summary = "; ".join(str(p) for p in self.problems[:5])
        if len(self.problems) > 5:
            summary += f"; and {len(self.problems) - 5} more"
        super().__init__(f"invalid process definition: {summary}", code="definition.invalid",
                         params={"count": len(self.problems)})

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message,
                "problems": [p.to_dict() for p in self.problems]}


class MigrationRefused(EngineError):
    code = "migration_refused"

    def __init__(self, message: str, reasons: list[str]):
        self.reasons = reasons
        super().__init__(message + ": " + "; ".join(reasons), code="migration.refused",
                         params={"reasons": "; ".join(reasons)}, reasons=reasons)


class ScriptError(Exception):
    """A script or expression failed inside the sandbox (becomes an incident)."""
