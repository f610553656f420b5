"""The caller's notifications and how they want them by e-mail. Everyone sees only their
own: another user's notification does not exist for them."""
from __future__ import annotations

from .. import schemas
from ..auth import authenticated, current
from .common import Blueprint, SECURITY, engine

blp = Blueprint("notifications", __name__, description="Notifications (everyone, their own)")


@blp.route("/notifications")
@blp.arguments(schemas.NotificationArgs, location="query")
@blp.response(200, schemas.NotificationPage)
@blp.doc(security=SECURITY)
@authenticated
def notifications(args):
    """My notifications, unread first and newest first."""
    service = engine().notifications
    username = current().username
    size = args["page_size"]
    items = service.list_for(username, unread_only=args["unread_only"], limit=size,
                             offset=(args["page"] - 1) * size)
    return {"items": items, "total": service.count(username, unread_only=args["unread_only"]),
            "page": args["page"], "page_size": size, "unread": service.unread_count(username)}


@blp.route("/notifications/read", methods=["POST"])
@blp.arguments(schemas.MarkRead)
@blp.response(200, schemas.MarkReadResult)
@blp.doc(security=SECURITY)
@authenticated
def mark_read(body):
    """Mark some of my notifications read (``ids``), or all of them (``{}``)."""
    service = engine().notifications
    username = current().username
    marked = service.mark_read(username, body.get("ids"))
    return {"marked": marked, "unread": service.unread_count(username)}


@blp.route("/me/notification-preference")
@blp.response(200, schemas.PreferenceOut)
@blp.doc(security=SECURITY)
@authenticated
def preference():
    """How my notifications reach me by e-mail: immediate, digest (daily) or off."""
    service = engine().notifications
    username = current().username
    return {"mode": service.preference(username), "email": service.email(username)}


@blp.route("/me/notification-preference", methods=["PUT"])
@blp.arguments(schemas.PreferenceIn)
@blp.response(200, schemas.PreferenceOut)
@blp.doc(security=SECURITY)
@authenticated
def set_preference(body):
    """Choose how my notifications reach me by e-mail (in the app they always do)."""
    service = engine().notifications
    username = current().username
    return {"mode": service.set_preference(username, body["mode"]),
            "email": service.email(username)}
