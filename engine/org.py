"""The organisation tree and the roles that BPMN lanes name.

Lanes name roles (``proposer``, ``head``, ``leadership``, ``superior_head``,
``party_committee``, ``home_affairs``, ``chairman``, ``council``, ``implementer``, ``office``,
``reporting_unit``, ``decider``…); they resolve at run time from the instance's context (the
proposer and the proposer's unit) through the tree, never from names in the BPMN.

An *agency* (cơ quan sử dụng cán bộ) is the nearest unit, from a unit upwards, that is a
province, a department or a commune; divisions and offices belong to their agency.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Iterable, Mapping

from sqlalchemy import delete, select
from werkzeug.security import generate_password_hash

from .errors import InvalidData, NotFound
from .store import Database, Grant, Membership, OrgUnit, User

AGENCY_KINDS = ("province", "department", "commune")
POSITIONS = ("head", "deputy", "staff", "party_secretary", "council_member")
ROLES = ("proposer", "head", "deputy", "leadership", "superior_head", "party_committee",
         "home_affairs", "chairman", "council", "implementer", "office", "reporting_unit",
         "decider")
DEFAULT_DEMO_PASSWORD = "nd73-demo"


@dataclass(frozen=True)
class Resolution:
    usernames: list[str]
    unit_id: str | None
    role: str


class Org:
    # Units and memberships are read at every step (a lane's role walks up the tree one
    # level at a time and names the members of a unit), so they are kept in memory: reloaded
    # after a seed in this process, and at most TREE_SECONDS old for changes made by another
    # process (units and memberships change only by seeding).
    TREE_SECONDS = 10.0

    def __init__(self, db: Database):
        self.db = db
        self._units: dict[str, OrgUnit] | None = None
        self._members: dict[str, list[tuple[str, str]]] = {}
        self._held: dict[str, list[tuple[str, str]]] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """Forget the cached tree (after units are written other than by :meth:`seed`)."""
        with self._lock:
            self._units = None

    def _tree(self) -> dict[str, OrgUnit]:
        return self._snapshot()[0]

    def _snapshot(self):
        """The units by id, each unit's (username, position) memberships by username, and
        each user's (unit, position) memberships in the order they were made; read
        together."""
        with self._lock:
            snapshot = (self._units, self._members, self._held)
            if snapshot[0] is not None and \
                    time.monotonic() - self._loaded_at < self.TREE_SECONDS:
                return snapshot
        with self.db.reading() as session:
            units = {u.id: u for u in session.scalars(select(OrgUnit))}
            members: dict[str, list[tuple[str, str]]] = {}
            held: dict[str, list[tuple[str, str]]] = {}
            for unit_id, username, position in session.execute(
                    select(Membership.unit_id, Membership.username, Membership.position)
                    .order_by(Membership.id)):
                members.setdefault(unit_id, []).append((username, position))
                held.setdefault(username, []).append((unit_id, position))
        for unit_members in members.values():
            unit_members.sort()
        with self._lock:
            self._units, self._members, self._held = units, members, held
            self._loaded_at = time.monotonic()
        return units, members, held

    # --- look-ups ------------------------------------------------------------------------
    def unit(self, unit_id: str) -> OrgUnit:
        unit = self._tree().get(unit_id)
        if unit is None:            # perhaps added since the tree was read: ask the database
            with self.db.reading() as session:
                unit = session.get(OrgUnit, unit_id)
        if unit is None:
            raise NotFound(f"unit '{unit_id}' does not exist", unit_id=unit_id)
        return unit

    def agency_of(self, unit_id: str) -> OrgUnit:
        unit = self.unit(unit_id)
        while unit.kind not in AGENCY_KINDS and unit.parent_id:
            unit = self.unit(unit.parent_id)
        return unit

    def superior_agency_of(self, unit_id: str) -> OrgUnit | None:
        agency = self.agency_of(unit_id)
        return self.agency_of(agency.parent_id) if agency.parent_id else None

    def province_of(self, unit_id: str) -> OrgUnit:
        unit = self.unit(unit_id)
        while unit.parent_id:
            unit = self.unit(unit.parent_id)
        return unit

    def members(self, unit_id: str | None, positions: Iterable[str]) -> list[str]:
        wanted = set(positions)
        return list(dict.fromkeys(username for username, position
                                  in self._snapshot()[1].get(unit_id, ())
                                  if position in wanted))

    def positions(self, username: str, unit_id: str | None = None) -> list[str]:
        return sorted({position for unit, position in self._snapshot()[2].get(username, ())
                       if not unit_id or unit == unit_id})

    def units_of(self, username: str) -> list[str]:
        return list(dict.fromkeys(unit for unit, _ in self._snapshot()[2].get(username, ())))

    def tagged(self, under_unit_id: str, tag: str) -> OrgUnit | None:
        """The first unit with ``tag`` in the subtree of ``under_unit_id`` (itself included)."""
        for unit in self.subtree(under_unit_id):
            if tag in (unit.tags or []):
                return unit
        return None

    def subtree(self, unit_id: str) -> list[OrgUnit]:
        root = self.unit(unit_id)
        units = sorted((u for u in self._tree().values() if u.variant == root.variant),
                       key=lambda u: u.id)
        children: dict[str | None, list[OrgUnit]] = {}
        for unit in units:
            children.setdefault(unit.parent_id, []).append(unit)
        result, stack = [], [root]
        while stack:
            unit = stack.pop(0)
            result.append(unit)
            stack.extend(children.get(unit.id, []))
        return result

    def reporting_units(self, unit_id: str, kinds: Iterable[str] = ("department", "commune"),
                        exclude_tags: Iterable[str] = ()) -> list[str]:
        """Units below ``unit_id`` of the given kinds: who reports in a reporting cycle."""
        kinds, excluded = set(kinds), set(exclude_tags)
        return [u.id for u in self.subtree(unit_id)[1:]
                if u.kind in kinds and not excluded & set(u.tags or [])]

    # --- roles ---------------------------------------------------------------------------
    def resolve(self, role: str, *, proposer: str | None, unit_id: str | None,
                data: Mapping | None = None, assignee_from: str | None = None) -> Resolution:
        """Usernames who may act in ``role`` for an instance started by ``proposer`` in
        ``unit_id``. A task whose ``assigneeFrom`` property names a data variable (one
        member's ballot in a vote) goes to the user named there."""
        data = data or {}
        if assignee_from:
            named = data.get(assignee_from)
            return Resolution([named] if isinstance(named, str) else [], unit_id, role)
        if role == "decider":
            role = str(data.get("decider_role") or "head")
        if role == "proposer":
            return Resolution([proposer] if proposer else [], unit_id, role)
        if role == "implementer":
            implementers = data.get("implementers") or ([proposer] if proposer else [])
            return Resolution([str(u) for u in implementers], unit_id, role)
        if role == "reporting_unit":
            reporting = data.get("reporting_unit") or unit_id
            return Resolution(self.members(reporting, ("head", "staff")), reporting, role)
        if role == "council":
            members = data.get("council_members")
            if members:
                return Resolution([str(u) for u in members], unit_id, role)
        if not unit_id:
            raise InvalidData(f"role '{role}' needs the proposer's unit (proposer_unit)")
        target = self._role_unit(role, unit_id)
        if target is None:
            return Resolution([], None, role)
        positions = {"head": ("head",), "superior_head": ("head",), "chairman": ("head",),
                     "leadership": ("head", "deputy"), "deputy": ("deputy",),
                     "party_committee": ("party_secretary",),
                     "home_affairs": ("head", "staff"), "office": ("head", "staff"),
                     "council": ("council_member",)}.get(role)
        if positions is None:
            raise InvalidData(f"unknown role '{role}' (lane name)")
        return Resolution(self.members(target.id, positions), target.id, role)

    def _role_unit(self, role: str, unit_id: str) -> OrgUnit | None:
        if role in ("head", "leadership", "deputy", "party_committee"):
            return self.agency_of(unit_id)
        if role == "superior_head":
            return self.superior_agency_of(unit_id)
        province = self.province_of(unit_id)
        if role == "chairman":
            return province
        if role == "home_affairs":
            return self.tagged(province.id, "home_affairs")
        if role == "office":
            return self.tagged(self.agency_of(unit_id).id, "office") or self.tagged(
                province.id, "office")
        if role == "council":
            return self.tagged(province.id, "council")
        return self.agency_of(unit_id)

    def decision_unit(self, decider_role: str, unit_id: str) -> OrgUnit | None:
        """The agency whose collective leadership meets for the decider's decision."""
        if decider_role == "superior_head":
            return self.superior_agency_of(unit_id)
        if decider_role == "chairman":
            return self.province_of(unit_id)
        return self.agency_of(unit_id)

    def voters_for(self, decider_role: str, proposer: str | None, unit_id: str) -> list[str]:
        unit = self.decision_unit(decider_role, unit_id)
        if unit is None:
            return []
        return [m for m in self.members(unit.id, ("head", "deputy")) if m != proposer]

    def chair_for(self, decider_role: str, unit_id: str) -> str | None:
        unit = self.decision_unit(decider_role, unit_id)
        heads = self.members(unit.id, ("head",)) if unit is not None else []
        return heads[0] if heads else None

    def heads_above(self, username: str, unit_id: str | None) -> list[str]:
        """Whom to tell when ``username`` is late: the head of their agency, or the superior
        agency's head when they are that head themselves."""
        units = [unit_id] if unit_id else self.units_of(username)
        for unit in units:
            agency = self.agency_of(unit)
            heads = [h for h in self.members(agency.id, ("head",)) if h != username]
            if heads:
                return heads
            superior = self.superior_agency_of(unit)
            if superior is not None:
                return self.members(superior.id, ("head",))
        return []

    # --- seeding -------------------------------------------------------------------------
    def seed(self, variant: str, org: Mapping, password: str) -> tuple[int, int]:
        """Create or refresh a variant's organisation from its ``org.toml`` content."""
        units = org.get("units", [])
        users = org.get("users", [])
        ids = [u["id"] for u in units]
        if len(ids) != len(set(ids)):
            raise InvalidData(f"org of {variant}: unit ids must be unique")
        password_hash = generate_password_hash(password, method="pbkdf2:sha256:60000")
        with self.db.transaction() as session:
            for spec in units:
                unit = session.get(OrgUnit, spec["id"]) or OrgUnit(id=spec["id"])
                unit.variant, unit.name, unit.kind = variant, spec["name"], spec["kind"]
                unit.parent_id, unit.tags = spec.get("parent"), list(spec.get("tags", []))
                session.merge(unit)
            session.flush()
            for spec in users:
                user = session.get(User, spec["username"])
                if user is None:
                    session.add(User(username=spec["username"], full_name=spec["full_name"],
                                     password_hash=password_hash, active=True,
                                     email=spec.get("email"), notification_mode="immediate"))
                else:
                    user.full_name = spec["full_name"]
                    user.email = spec.get("email", user.email)
                session.flush()
                session.execute(delete(Membership).where(
                    Membership.username == spec["username"],
                    Membership.unit_id.in_(ids)))
                for held in spec.get("memberships", []):
                    if held["position"] not in POSITIONS:
                        raise InvalidData(f"org of {variant}: unknown position "
                                          f"'{held['position']}' for {spec['username']}")
                    session.add(Membership(username=spec["username"], unit_id=held["unit"],
                                           position=held["position"]))
                for grant in ("admin", "designer"):
                    for target in spec.get(f"{grant}_of", []):
                        exists = session.scalars(select(Grant).where(
                            Grant.username == spec["username"], Grant.variant == target,
                            Grant.grant == grant)).first()
                        if exists is None:
                            session.add(Grant(username=spec["username"], variant=target,
                                              grant=grant))
        self.invalidate()
        return len(units), len(users)

    def sandbox_functions(self) -> dict:
        """Read-only look-ups offered to BPMN scripts."""
        return {
            "agency_of": lambda unit_id: self.agency_of(unit_id).id,
            "agency_kind": lambda unit_id: self.agency_of(unit_id).kind,
            "members_of": lambda unit_id, *positions: self.members(unit_id, positions),
            "positions_of": lambda username, unit_id=None: self.positions(username, unit_id),
            "role_members": lambda role, proposer, unit_id: self.resolve(
                role, proposer=proposer, unit_id=unit_id).usernames,
            "reporting_units_of": lambda unit_id, *kinds: self.reporting_units(
                unit_id, kinds or ("department", "commune"), ("home_affairs", "office")),
            "unit_name": lambda unit_id: self.unit(unit_id).name,
            "province_of": lambda unit_id: self.province_of(unit_id).id,
            "voters_for": self.voters_for,
            "chair_for": self.chair_for,
        }
