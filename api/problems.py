"""Errors as RFC 9457 problem details (``application/problem+json``), titled in Vietnamese or
English following Accept-Language (the catalogues' ``problem.<type>``). A problem that carries
a message code has it as ``code`` with its ``params``; field errors with a code are said in
both languages (``message``, ``message_en``). No traceback ever reaches a client."""
from __future__ import annotations

import logging

import sqlalchemy.exc
from flask import Flask, Response, current_app, json, request
from werkzeug.exceptions import HTTPException

from engine.errors import N_, EngineError

from . import catalogues

log = logging.getLogger("nd73.api")
BASE = "https://nd73.vn/problems/"

# type -> (status, the message id of its title)
PROBLEMS = {
    "malformed-request": (400, N_("problem.malformed-request")),
    "unauthenticated": (401, N_("problem.unauthenticated")),
    "forbidden": (403, N_("problem.forbidden")),
    "not-found": (404, N_("problem.not-found")),
    "method-not-allowed": (405, N_("problem.method-not-allowed")),
    "conflict": (409, N_("problem.conflict")),
    "invalid-state": (409, N_("problem.invalid-state")),
    "migration-refused": (409, N_("problem.migration-refused")),
    "payload-too-large": (413, N_("problem.payload-too-large")),
    "unsupported-media-type": (415, N_("problem.unsupported-media-type")),
    "invalid-data": (422, N_("problem.invalid-data")),
    "invalid-definition": (422, N_("problem.invalid-definition")),
    "too-many-requests": (429, N_("problem.too-many-requests")),
    "server-error": (500, N_("problem.server-error")),
    "server-unavailable": (503, N_("problem.server-unavailable")),
    "database-unavailable": (503, N_("problem.database-unavailable")),
    "storage-full": (507, N_("problem.storage-full")),
}
_ENGINE_TYPES = {"not_found": "not-found", "forbidden": "forbidden", "conflict": "conflict",
                 "invalid_state": "invalid-state", "invalid_data": "invalid-data",
                 "definition_invalid": "invalid-definition",
                 "migration_refused": "migration-refused", "unavailable": "server-unavailable"}
_STATUS_TYPES = {400: "malformed-request", 401: "unauthenticated", 403: "forbidden",
                 404: "not-found", 405: "method-not-allowed", 409: "conflict",
                 413: "payload-too-large", 415: "unsupported-media-type",
                 422: "invalid-data", 429: "too-many-requests"}


# how SQLite and PostgreSQL say that the disk (or the database's size limit) is full
_STORAGE_FULL = ("database or disk is full", "no space left on device", "disk full",
                 "could not extend file")


class ApiProblem(Exception):
    """Raised by views: a problem of a known type with a detail for people; ``code`` and
    ``params`` (a message code of the catalogues) say it in the reader's language."""

    def __init__(self, kind: str, detail: str | None = None, *, code: str | None = None,
                 params: dict | None = None, **extra):
        super().__init__(detail or kind)
        self.kind, self.detail, self.extra = kind, detail, extra
        self.message_code, self.params = code, dict(params or {})
        if code:
            self.extra.update(code=code, params=self.params)


def english() -> bool:
    best = request.accept_languages.best_match(["vi", "en"]) if request else None
    return best == "en"


def problem(kind: str, detail: str | None = None, **extra) -> Response:
    status, title = PROBLEMS[kind]
    page_for_people = current_app.extensions.get("nd73.error_page") if request else None
    if page_for_people is not None:          # the web app answers its pages in HTML
        page = page_for_people(status, kind, detail, extra)
        if page is not None:
            return page
    if "errors" in extra:
        extra["errors"] = catalogues.localized_errors(extra["errors"])
    body = {**extra, "type": BASE + kind,
            "title": catalogues.text(title, "en" if english() else "vi"),
            "status": status, **({"detail": detail} if detail else {})}
    return Response(json.dumps(body, ensure_ascii=False), status=status,
                    mimetype="application/problem+json")


def engine_problem(exc: EngineError) -> Response:
    """A refusal of the engine as a problem of its type, with its details."""
    extra = {k: v for k, v in exc.to_dict().items() if k not in ("code", "message")}
    if exc.message_code:
        extra.update(code=exc.message_code, params=exc.params)
    return problem(_ENGINE_TYPES.get(exc.code, "malformed-request"), exc.message, **extra)


def _field_errors(messages, prefix="") -> list[dict]:
    """webargs/marshmallow messages → [{field, message}]."""
    errors = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key in ("json", "query", "form", "files", "view_args", "headers") and not prefix:
                errors += _field_errors(value, "")
            else:
                errors += _field_errors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        errors += [{"field": prefix or "(body)", "message": m, "message_en": m}
                   for m in messages]
    elif isinstance(messages, list):
        for index, value in enumerate(messages):
            errors += _field_errors(value, f"{prefix}.{index}")
    else:
        errors.append({"field": prefix or "(body)", "message": str(messages),
                       "message_en": str(messages)})
    return errors


class _NotAJsonNumber(ValueError):
    pass


def _refuse_constant(name: str):
    raise _NotAJsonNumber(name)


def _non_json_number(request_) -> str | None:
    """``NaN``, ``Infinity`` or ``-Infinity`` where a JSON body has a number: Python's
    parser reads them, JSON has no such numbers (PostgreSQL's JSON columns refuse them, a
    browser cannot read them back). Parsed again only when a body holds one of the words."""
    if not request_.is_json or not request_.content_length:
        return None
    body = request_.get_data(cache=True)
    if b"NaN" not in body and b"Infinity" not in body:
        return None
    try:
        json.loads(body, parse_constant=_refuse_constant)
    except _NotAJsonNumber as exc:
        return str(exc)
    except ValueError:               # not JSON at all: the route's parser says so
        return None
    return None


def _has_nul(request_) -> bool:
    texts = [request_.path, *request_.args.keys(), *request_.args.values()]
    if request_.mimetype.startswith("multipart/") or request_.mimetype.endswith("urlencoded"):
        texts += [*request_.form.keys(), *request_.form.values()]
        texts += [f.filename or "" for f in request_.files.values()]
    elif request_.content_length:
        body = request_.get_data(cache=True)
        if b"\x00" in body or b"\\u0000" in body:
            return True
    return any(isinstance(text, str) and "\x00" in text for text in texts)


def register(app: Flask) -> None:
    @app.before_request
    def refuse_what_cannot_be_stored():
        # NUL characters cannot be stored (PostgreSQL text) and have no place in any field;
        # nor can NaN and the infinities (not JSON), which Python's JSON parser accepts
        if _has_nul(request):
            return problem("malformed-request", "NUL characters (\\u0000) are not allowed")
        constant = _non_json_number(request)
        if constant is not None:
            return problem("malformed-request", f"{constant} is not a JSON number")

    @app.errorhandler(ApiProblem)
    def api_problem(exc: ApiProblem):
        return problem(exc.kind, exc.detail, **exc.extra)

    app.register_error_handler(EngineError, engine_problem)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        kind = _STATUS_TYPES.get(exc.code or 0, "malformed-request")
        data = getattr(exc, "data", None) or {}
        if "messages" in data:
            return problem("invalid-data" if exc.code == 422 else kind,
                           "some fields are invalid", errors=_field_errors(data["messages"]))
        if exc.code and exc.code >= 500:
            log.error("HTTP %s on %s %s", exc.code, request.method, request.path)
            return problem("server-error")
        return problem(kind, exc.description if exc.code != 404 else None)

    @app.errorhandler(sqlalchemy.exc.OperationalError)
    @app.errorhandler(sqlalchemy.exc.InterfaceError)
    @app.errorhandler(sqlalchemy.exc.TimeoutError)
    def database_unavailable(exc: Exception):
        # the unit of work rolled back: nothing of this request was written, so the client
        # may send it again (a completed task then answers 409, never a double completion)
        log.error("database error on %s %s: %s", request.method, request.path,
                  str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        text = str(getattr(exc, "orig", exc)).lower()
        if any(sign in text for sign in _STORAGE_FULL):
            return problem("storage-full", "the database has no space left; this request "
                                           "wrote nothing")
        response = problem("database-unavailable", "this request wrote nothing; send it again")
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return problem("server-error")
