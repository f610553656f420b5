"""Flask application factory."""
from __future__ import annotations

from flask import Flask, jsonify

from engine.errors import EngineError
from engine.workflow_engine import WorkflowEngine


def create_app(engine: WorkflowEngine | None = None) -> Flask:
    app = Flask(__name__)
    app.config["JSON_AS_ASCII"] = False
    app.extensions["nd73"] = engine or WorkflowEngine()

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.errorhandler(EngineError)
    def engine_error(exc: EngineError):
        status = {"not_found": 404, "conflict": 409, "definition_invalid": 422,
                  "invalid_data": 422, "invalid_state": 409,
                  "migration_refused": 409}.get(exc.code, 400)
        return jsonify(exc.to_dict()), status

    @app.errorhandler(404)
    def not_found(_exc):
        return jsonify(code="not_found", message="no such resource"), 404

    @app.errorhandler(500)
    def server_error(_exc):
        return jsonify(code="server_error", message="internal error; it has been logged"), 500

    return app
