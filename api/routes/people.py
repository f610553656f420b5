"""Sign-in, the caller, users and the organisation tree."""
from __future__ import annotations

from flask import current_app, request
from sqlalchemy import select

from engine.store import Membership, OrgUnit, User
from engine.tasks import Page

from .. import schemas
from ..auth import authenticated, current, issue_token, remember_device, trusted_device
from ..problems import ApiProblem
from .common import Blueprint, SECURITY, engine, page_dict

blp = Blueprint("people", __name__, description="Sign-in, users and the organisation tree")


@blp.route("/auth/token", methods=["POST"])
@blp.arguments(schemas.TokenRequest)
@blp.response(200, schemas.Token)
def token(credentials):
    """Exchange a username and password for a bearer token."""
    if not current_app.extensions["nd73.settings"].password_sign_in:
        raise ApiProblem("forbidden", "password sign-in is off here (ND73_PASSWORD_SIGN_IN=0): "
                                      "officials sign in through the identity provider")
    access = engine().access
    address = request.remote_addr or "unknown"
    device = trusted_device(credentials["username"])
    if access.locked_out(credentials["username"], address, device):
        raise ApiProblem("too-many-requests", "too many failed sign-ins; wait 15 minutes")
    principal = access.authenticate(credentials["username"], credentials["password"], address,
                                    device)
    if principal is None:
        raise ApiProblem("unauthenticated", "wrong username or password")
    remember_device(principal.username, device)
    access_token, ttl = issue_token(principal)
    return {"access_token": access_token, "token_type": "Bearer", "expires_in": ttl}


@blp.route("/me")
@blp.response(200, schemas.Me)
@blp.doc(security=SECURITY)
@authenticated
def me():
    """The caller: units, positions and administrator/designer rights."""
    principal = current()
    units = []
    with engine().db.reading() as session:
        for unit_id, position in principal.memberships:
            unit = session.get(OrgUnit, unit_id)
            units.append({"unit_id": unit_id, "unit_name": unit.name if unit else None,
                          "variant": unit.variant if unit else None, "position": position})
    return {"username": principal.username, "full_name": principal.full_name, "units": units,
            "roles": {"admin_of": sorted(principal.admin_of),
                      "designer_of": sorted(principal.designer_of)}}


def _admin_variants() -> set[str] | None:
    """Variants the caller administers (None: every variant); 403 if none."""
    principal = current()
    if not principal.is_admin():
        raise ApiProblem("forbidden", "only administrators may list users and units")
    return None if "*" in principal.admin_of else set(principal.admin_of)


@blp.route("/users")
@blp.arguments(schemas.VariantArgs, location="query")
@blp.response(200, schemas.page_of(schemas.UserOut))
@blp.doc(security=SECURITY)
@authenticated
def users(args):
    """Users with their memberships (administrators; of their variants)."""
    variants = _admin_variants()
    wanted = {args["variant"]} if args.get("variant") else None
    if variants is not None:
        wanted = (wanted or variants) & variants
    with engine().db.reading() as session:
        query = select(User).order_by(User.username)
        if wanted is not None:
            query = query.where(User.username.in_(
                select(Membership.username).join(OrgUnit, OrgUnit.id == Membership.unit_id)
                .where(OrgUnit.variant.in_(wanted))))
        rows = list(session.scalars(query))
        held = {}
        for m in session.scalars(select(Membership).order_by(Membership.id)):
            held.setdefault(m.username, []).append({"unit_id": m.unit_id,
                                                    "position": m.position})
    start = (args["page"] - 1) * args["page_size"]
    chosen = rows[start:start + args["page_size"]]
    return {"items": [{"username": u.username, "full_name": u.full_name,
                       "memberships": held.get(u.username, [])} for u in chosen],
            "total": len(rows), "page": args["page"], "page_size": args["page_size"]}


@blp.route("/org-units")
@blp.arguments(schemas.VariantArgs, location="query")
@blp.response(200, schemas.page_of(schemas.OrgUnitOut))
@blp.doc(security=SECURITY)
@authenticated
def org_units(args):
    """The organisation tree (administrators; of their variants)."""
    variants = _admin_variants()
    query = select(OrgUnit).order_by(OrgUnit.variant, OrgUnit.id)
    if args.get("variant"):
        query = query.where(OrgUnit.variant == args["variant"])
    if variants is not None:
        query = query.where(OrgUnit.variant.in_(variants))
    with engine().db.reading() as session:
        rows = list(session.scalars(query))
    start = (args["page"] - 1) * args["page_size"]
    page = Page(rows[start:start + args["page_size"]], len(rows), args["page"],
                args["page_size"])
    return page_dict(page, lambda u: {"id": u.id, "name": u.name, "parent_id": u.parent_id,
                                       "kind": u.kind, "variant": u.variant,
                                       "tags": u.tags or []})
