"""Flask application factory: the REST API (flask-smorest, OpenAPI) over one engine."""
from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from engine.config import Settings
from engine.store.db import PROJECT_ROOT
from engine.workflow_engine import WorkflowEngine

from . import catalogues, observability, problems
from .auth import CookieSessions, authenticate_first, secret_key
from .openapi import PROBLEM_RESPONSE, ProblemResponses
from .schemas import Problem
from . import ui
from .routes import (admin, definitions, documents, drafts, dryrun, files, instances,
                     messages,
                     notifications, organisation, people, reports, tasks)

API_PREFIX = "/api/v1"


def create_app(engine: WorkflowEngine | None = None, settings: Settings | None = None,
               **config) -> Flask:
    """The app over ``engine`` (else one made from ``settings``). ``settings`` are the
    process's, read once by the caller; without them, the engine's (an app made with
    neither reads the environment here, once)."""
    if settings is None:
        settings = engine.settings if engine is not None else Settings.from_environment()
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.session_interface = CookieSessions()
    configured_key = settings.secret_key.get_secret_value() if settings.secret_key else None
    app.config.update(
        JSON_AS_ASCII=False,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SECRET_KEY=secret_key(PROJECT_ROOT / "var", configured_key),
        TOKEN_TTL=settings.token_ttl,
        SESSION_TTL=settings.session_ttl,
        PERMANENT_SESSION_LIFETIME=settings.session_ttl,
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        API_TITLE="ND73 Workflow API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=API_PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/static/vendor/swagger-ui/",
        API_SPEC_OPTIONS={
            "info": {"description": "Officials, process designers and administrators of the "
                                    "Decree 73/2023/NĐ-CP procedures. Sign in with "
                                    "POST /auth/token and send the token as a Bearer header. "
                                    "Errors are application/problem+json (RFC 9457)."},
            "components": {"securitySchemes": {"bearerAuth": {"type": "http",
                                                              "scheme": "bearer"}}},
        },
    )
    app.config.update(config)
    app.extensions["nd73.settings"] = settings
    app.extensions["nd73"] = engine or WorkflowEngine(settings=settings)
    catalogues.install(app)
    # the case file names positions in the catalogues' words (position.head …)
    app.extensions["nd73"].dossiers.people.position_words = catalogues.position_words

    api = Api(app, spec_kwargs={"extra_plugins": [ProblemResponses()]})
    api.spec.components.schema("Problem", schema=Problem)
    api.spec.components.response(PROBLEM_RESPONSE, {
        "description": "Problem details (RFC 9457), titled after Accept-Language",
        "content": {"application/problem+json": {"schema": "Problem"}}})
    for blueprint in (people.blp, definitions.blp, instances.blp, tasks.blp, messages.blp,
                      reports.blp, admin.blp, files.blp, notifications.blp, documents.blp,
                      organisation.blp, drafts.blp, dryrun.blp):
        api.register_blueprint(blueprint, url_prefix=API_PREFIX)
    admin.register_test_clock(api, settings.test_clock)
    problems.register(app)
    app.before_request(authenticate_first)      # after the NUL check problems registers
    ui.register(app)
    observability.register(app, app.extensions["nd73"])
    return app
