"""Messages from outside (portals, administrators) to waiting instances."""
from __future__ import annotations

from sqlalchemy import select

from engine.store import Instance

from .. import schemas
from ..auth import authenticated, current
from ..problems import ApiProblem
from .common import Blueprint, SECURITY, engine, instance_dict

blp = Blueprint("messages", __name__, description="Messages to instances")


@blp.route("/messages", methods=["POST"])
@blp.arguments(schemas.MessageIn)
@blp.response(200, schemas.InstanceOut)
@blp.doc(security=SECURITY)
@authenticated
def send(body):
    """Deliver a message, by instance id or correlation (business) key, to an instance the
    caller takes part in or administers."""
    instance_id = body.get("instance_id")
    if not instance_id:
        with engine().db.reading() as session:
            ids = list(session.scalars(select(Instance.id).where(
                Instance.business_key == body["correlation_key"],
                engine().access.involved_clause(current()))))
        if not ids:
            raise ApiProblem("not-found", f"no instance with key '{body['correlation_key']}'")
        if len(ids) > 1:
            raise ApiProblem("conflict", "several instances have this key; use instance_id")
        instance_id = ids[0]
    instance = engine().runtime.send_message(body["name"], body["payload"],
                                             principal=current(), instance_id=instance_id)
    return instance_dict(engine().queries.instance(instance.id))
