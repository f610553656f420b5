"""The words people read, from the gettext catalogues in api/translations (Vietnamese, the
default, and English), compiled to .mo files by ``make translations``.

Message ids are keys (``sign_in``, ``stage.draft``, ``task.not_found``): the web app's words,
the API's problem titles, and the message codes that engine errors, field errors and BPMN
problems carry with their params (engine/errors.py). Flask-Babel picks the catalogue of the
request: a page's chosen language, else the API request's Accept-Language, else Vietnamese.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from flask import Flask, g, has_request_context, request
from flask_babel import Babel, force_locale, get_translations, gettext

TRANSLATIONS = Path(__file__).parent / "translations"
LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"

# params whose values are words of a vocabulary (a status), said in the reader's language:
# param name → the prefix of their message ids
_VOCABULARY_PARAMS = {"instance_status": "status.", "task_status": "task_status.",
                      "outbox_status": "outbox_status."}


def request_language() -> str:
    """A page's chosen language (``g.lang``), else Accept-Language, else Vietnamese."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    chosen = g.get("lang")
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES) or DEFAULT_LANGUAGE


def install(app: Flask) -> None:
    Babel(app, default_locale=DEFAULT_LANGUAGE, default_translation_directories=str(TRANSLATIONS),
          locale_selector=request_language)


def _in(language: str | None):
    return force_locale(language) if language else nullcontext()


def text(key: str, language: str | None = None, **params) -> str:
    """The words of ``key`` in ``language`` (the request's by default)."""
    with _in(language):
        return gettext(key, **params)


def position_words(position: str) -> tuple[str, str]:
    """A position of the organisation tree in Vietnamese and English (its code when the
    catalogues do not know it)."""
    key = f"position.{position}"
    if not known(key):
        return position, position
    return text(key, "vi"), text(key, "en")


def known(key: str) -> bool:
    """Whether the catalogues have ``key`` (gettext answers an unknown id with itself)."""
    return gettext(key) != key


def messages(prefixes: tuple[str, ...]) -> dict[str, str]:
    """The message ids starting with one of ``prefixes`` with their words in the request's
    language, for a page's script that says the API's codes (the modeler's problems)."""
    catalog = getattr(get_translations(), "_catalog", {})
    return {key: words for key, words in catalog.items()
            if isinstance(key, str) and key.startswith(prefixes)}


def say(code: str | None, params: dict | None = None, language: str | None = None
        ) -> str | None:
    """A message code with its params in ``language`` (the request's by default); None when
    the catalogues do not know the code or its words need a param that is missing."""
    if not code:
        return None
    with _in(language):
        template = gettext(code)
        if template == code:
            return None
        values = {}
        for name, value in (params or {}).items():
            prefix = _VOCABULARY_PARAMS.get(name)
            if prefix and isinstance(value, str) and known(prefix + value):
                value = gettext(prefix + value)
            values[name] = value
        try:
            return template % values
        except (KeyError, ValueError, TypeError):
            return None


def say_error(exc, language: str | None = None) -> str | None:
    """An engine error (or ApiProblem) in words, when it carries a known message code."""
    return say(getattr(exc, "message_code", None), getattr(exc, "params", None), language)


def localized_errors(errors: list) -> list:
    """Field errors of the API: those with a message code get ``message`` (Vietnamese) and
    ``message_en`` (English) from the catalogues; the others are kept as they are."""
    out = []
    for error in errors:
        if isinstance(error, dict) and error.get("code"):
            vi = say(error["code"], error.get("params"), "vi")
            if vi is not None:
                en = say(error["code"], error.get("params"), "en") or vi
                error = {**error, "message": vi, "message_en": en}
        out.append(error)
    return out
