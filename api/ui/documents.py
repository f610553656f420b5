"""The official documents of a case on its page (templates/_documents.html): the list, and
a correction issued from the page by the document's issuer or an administrator."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for

from engine.errors import Forbidden, InvalidData, NotFound

from .i18n import error_text, t
from .web import engine, principal, signed_in

blp = Blueprint("case_documents", __name__)


def case_documents(instance_id: str) -> list[dict]:
    """The documents of a case the signed-in user may see (none when they may not), each
    with ``may_correct``: the issuer or an administrator of the variant, once."""
    me = principal()
    try:
        documents = engine().documents.of_instance(instance_id, principal=me)
    except NotFound:
        return []
    return [{**d, "may_correct": not d["replaced_by"] and (
        d["issued_by"] == me.username or me.is_admin(d["variant"]))} for d in documents]


@blp.route("/documents/<string:document_id>/correct", methods=["POST"])
@signed_in
def correct(document_id):
    """Issue a correction (a new document with the next number that names the one it
    replaces), then back to the case."""
    documents = engine().documents
    shown = documents.get(document_id, principal=principal())     # 404 to whoever may not
    try:
        issued = documents.correct(document_id, request.form.get("reason", ""),
                                   principal=principal())
    except (Forbidden, InvalidData) as exc:
        flash(error_text(exc), "error")
    else:
        flash(t("document_corrected", reference=issued["reference"],
                replaced=shown["reference"]), "success")
    return redirect(url_for("officials.instance_page", instance_id=shown["instance_id"])
                    + "#documents")
