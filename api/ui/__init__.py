"""The web app for officials, process designers and administrators: server-rendered pages
(Vietnamese by default) over the same engine and authorization as the REST API."""
from __future__ import annotations

from flask import Flask

from . import (admin, designer, documents, form_builder, notifications, officials, organisation,
               web)


def register(app: Flask) -> None:
    web.install(app)
    app.jinja_env.globals.update(case_documents=documents.case_documents)
    for blueprint in (web.blp, officials.blp, designer.blp, admin.blp, notifications.blp,
                      organisation.blp, form_builder.blp):
        app.register_blueprint(blueprint)
