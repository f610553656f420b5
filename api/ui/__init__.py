"""The web app for officials, process designers and administrators: server-rendered pages
(Vietnamese by default) over the same engine and authorization as the REST API."""
from __future__ import annotations

from flask import Flask

from . import (admin, designer, documents, drafts, dryrun, form_builder, notifications,
               officials, organisation, sso, web)


def register(app: Flask) -> None:
    web.install(app)
    app.jinja_env.globals.update(case_documents=documents.case_documents)
    for blueprint in (web.blp, officials.blp, designer.blp, admin.blp, notifications.blp,
                      organisation.blp, documents.blp, drafts.blp, dryrun.blp,
                      form_builder.blp):
        app.register_blueprint(blueprint)
    sso.install(app, app.extensions["nd73.settings"])
