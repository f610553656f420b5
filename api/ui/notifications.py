"""The notification centre: the signed-in person's notifications, marking them read and the
e-mail preference."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from .i18n import t
from .web import engine, local_target, principal, signed_in

blp = Blueprint("notification_centre", __name__, template_folder="templates")
MODES = ("immediate", "digest", "off")
PAGE_SIZE = 50


@blp.route("/notifications")
@signed_in
def page():
    service = engine().notifications
    me = principal().username
    return render_template("notifications.html", items=service.list_for(me, limit=PAGE_SIZE),
                           preference=service.preference(me), modes=MODES)


@blp.route("/notifications/read", methods=["POST"])
@signed_in
def mark_read():
    wanted = request.form.get("id", type=int)
    engine().notifications.mark_read(principal().username, [wanted] if wanted else None)
    if request.form.get("next"):
        return redirect(local_target(request.form.get("next")))
    return redirect(url_for("notification_centre.page"))


@blp.route("/notifications/preference", methods=["POST"])
@signed_in
def preference():
    mode = request.form.get("mode")
    if mode in MODES:
        engine().notifications.set_preference(principal().username, mode)
        flash(t("done"), "success")
    return redirect(url_for("notification_centre.page"))
