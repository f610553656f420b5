"""The organisation tree, and the people a lane's role names in it.

Lanes name roles, which the variant's settings declare (see :mod:`engine.roles`); they
resolve at run time from the instance's context (the proposer and the proposer's unit)
through the tree, never from names in the BPMN.

An *agency* (cơ quan, đơn vị sử dụng cán bộ) is the nearest unit, from a unit upwards, that
is a province, a department, a commune, a public-service unit or an enterprise; divisions and
offices belong to their agency.
"""
from __future__ import annotations

import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from operator import attrgetter
from typing import Callable, Iterable, Iterator, Mapping

from sqlalchemy import bindparam, delete, select, update
from werkzeug.security import generate_password_hash

from .clock import LOCAL_TZ, Clock
from .errors import InvalidData, NotFound
from .roles import Role, role_named
from .sandbox import uncharged
from .store import Database, Grant, Membership, OrgGeneration, OrgUnit, User

# the kinds of unit that employ officials (cơ quan, đơn vị sử dụng cán bộ): a division belongs
# to the agency above it
AGENCY_KINDS = ("province", "department", "commune", "public_service_unit", "enterprise")
# Unit kinds an administrator chooses from: the province, its departments and communes,
# public-service units and enterprises with state capital, and their divisions (a unit keeps
# another kind a seed gave it).
UNIT_KINDS = ("province", "department", "commune", "public_service_unit", "enterprise",
              "division")
POSITIONS = ("head", "deputy", "acting_head", "party_secretary", "office_staff", "staff",
             "council_member", "state_capital_representative")
DEFAULT_DEMO_PASSWORD = "nd73-demo"

# the organisation's generation counter (see bump_generation)
_GENERATION = select(OrgGeneration.generation).where(OrgGeneration.id == 1)
_UNIT_ID = attrgetter("id")        # a sort key without a Python call per unit
# which of some usernames are active accounts (Org.people)
_ACTIVE_USERS = select(User.username).where(
    User.username.in_(bindparam("usernames", expanding=True)), User.active.is_(True))


def local_today(clock: Clock) -> date:
    """Today in Asia/Ho_Chi_Minh by the engine's clock: the day appointments are dated in."""
    return clock.now().astimezone(LOCAL_TZ).date()


def in_force(valid_from: date | None, valid_to: date | None, today: date) -> bool:
    """A membership counts (for roles, routing and what its holder sees) from its first day
    to its last, both included; an open end counts for ever."""
    return (valid_from is None or valid_from <= today) and (valid_to is None
                                                             or today <= valid_to)


@dataclass(frozen=True, eq=False, slots=True)
class Unit:
    """A unit as the cached tree holds it: its row's values. (The tree was made of the
    session's objects: reading a country's 50,000 units took three times as long.)"""

    id: str
    variant: str
    name: str
    parent_id: str | None
    kind: str
    tags: list

    @classmethod
    def of(cls, row) -> Unit:
        """The unit of a row of :data:`_UNITS`."""
        unit_id, variant, name, parent_id, kind, tags = row
        return cls(unit_id, variant, name, parent_id, kind, tags or [])


# the tree's units (Unit's fields, in order)
_UNITS = select(OrgUnit.id, OrgUnit.variant, OrgUnit.name, OrgUnit.parent_id, OrgUnit.kind,
                OrgUnit.tags)


@dataclass(frozen=True)
class Resolution:
    usernames: list[str]
    unit_id: str | None
    role: str
    # the positions the people were found through in unit_id; () when named personally
    positions: tuple[str, ...] = ()


def bump_generation(session) -> None:
    """Count a change of the organisation, in the transaction that makes it: every process's
    cached tree sees it is stale at its next read (the row also orders concurrent changes)."""
    changed = session.execute(update(OrgGeneration).where(OrgGeneration.id == 1)
                              .values(generation=OrgGeneration.generation + 1)
                              ).rowcount  # type: ignore[attr-defined]
    if not changed:
        session.add(OrgGeneration(id=1, generation=1))
        session.flush()


class Org:
    # Units and memberships are read at every step (a lane's role walks up the tree one
    # level at a time and names the members of a unit), so they are kept in memory. Each
    # read asks the organisation's generation (one row by primary key) and reloads the tree
    # when another change was committed since, in this process or another: a head replaced
    # a moment ago is never given a task. A role's resolution reads the generation once.

    def __init__(self, db: Database, clock: Clock | None = None):
        self.db = db
        self.clock = clock or Clock()
        self._day: date | None = None
        self._units: dict[str, Unit] | None = None
        self._members: dict[str, list[tuple[str, str]]] = {}
        self._held: dict[str, list[tuple[str, str]]] = {}
        self._generation: int | None = None
        self._lock = threading.Lock()
        self._local = threading.local()

    def invalidate(self) -> None:
        """Forget the cached tree."""
        with self._lock:
            self._units = None

    @contextmanager
    def consistent(self) -> Iterator[None]:
        """Look-ups inside read one snapshot of the tree, its generation checked once, at
        the first look-up (a step that names nobody reads nothing)."""
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if not depth:
                self._local.pinned = self._local.known = None

    def known_generation(self, generation: int) -> None:
        """The generation a statement of the caller's unit of work read with its own rows
        (the lock of its instance, engine.audit): inside :meth:`consistent`, the first
        look-up takes it instead of reading it again (one statement fewer per step)."""
        if getattr(self._local, "depth", 0) and getattr(self._local, "pinned", None) is None:
            self._local.known = generation

    def generation(self) -> int:
        # asked before every use of the cached tree (several times a step): one Core
        # statement built once, outside a transaction (inside a unit of work, through its
        # connection), 0.1 ms instead of 0.5 under the profiler
        rows = self.db.read_rows(_GENERATION)
        return (rows[0][0] if rows else None) or 0

    def _tree(self) -> dict[str, Unit]:
        return self._snapshot()[0]

    def _snapshot(self):
        """The units by id, each unit's (username, position) memberships by username, and
        each user's (unit, position) memberships in the order they were made; read
        together."""
        pinned = getattr(self._local, "pinned", None)
        if pinned is not None:
            return pinned
        if getattr(self._local, "depth", 0):
            snapshot = self._local.pinned = self._current(getattr(self._local, "known", None))
            return snapshot
        snapshot = self._current()
        return snapshot

    def _current(self, known: int | None = None):
        # the generation first (``known``: read by the unit of work already): data read
        # after it is at least as new as it says
        # and the day: a membership counts from its valid_from to its valid_to (inclusive,
        # local dates of the engine's clock), so the tree is read again when the day changes
        generation = self.generation() if known is None else known
        today = local_today(self.clock)
        with self._lock:
            snapshot = (self._units, self._members, self._held)
            if snapshot[0] is not None and self._generation == generation \
                    and self._day == today:
                return snapshot
        # read again after a change: not charged to a script whose look-up finds it stale
        with uncharged(), self.db.reading() as session:
            units = {row[0]: Unit.of(row) for row in session.execute(_UNITS)}
            members: dict[str, list[tuple[str, str]]] = {}
            held: dict[str, list[tuple[str, str]]] = {}
            for unit_id, username, position, valid_from, valid_to in session.execute(
                    select(Membership.unit_id, Membership.username, Membership.position,
                           Membership.valid_from, Membership.valid_to)
                    .order_by(Membership.id)):
                if not in_force(valid_from, valid_to, today):
                    continue
                members.setdefault(unit_id, []).append((username, position))
                held.setdefault(username, []).append((unit_id, position))
        for unit_members in members.values():
            unit_members.sort()
        with self._lock:
            self._units, self._members, self._held = units, members, held
            self._generation, self._day = generation, today
        return units, members, held

    # --- look-ups ------------------------------------------------------------------------
    def unit(self, unit_id: str) -> Unit:
        unit = self._tree().get(unit_id)
        if unit is None:            # perhaps added since the tree was read: ask the database
            with self.db.reading() as session:
                row = session.execute(_UNITS.where(OrgUnit.id == unit_id)).first()
            unit = Unit.of(row) if row is not None else None
        if unit is None:
            raise NotFound(f"unit '{unit_id}' does not exist", code="unit.not_found",
                           params={"unit": unit_id}, unit_id=unit_id)
        return unit

    def agency_of(self, unit_id: str) -> Unit:
        unit = self.unit(unit_id)
        while unit.kind not in AGENCY_KINDS and unit.parent_id:
            unit = self.unit(unit.parent_id)
        return unit

    def superior_agency_of(self, unit_id: str) -> Unit | None:
        agency = self.agency_of(unit_id)
        return self.agency_of(agency.parent_id) if agency.parent_id else None

    def province_of(self, unit_id: str) -> Unit:
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

    def people(self, variant: str, usernames: Iterable[str]) -> set[str]:
        """Those of ``usernames`` who are people of ``variant``'s organisation: an active
        account holding a position in one of its units (whom a form may name)."""
        # one snapshot for all (each look-up of it outside a step asks the generation)
        units, _, held = self._snapshot()
        holding = {u for u in usernames
                   if any(getattr(units.get(unit), "variant", None) == variant
                          for unit, _ in held.get(u, ()))}
        if not holding:
            return set()
        return {row[0] for row in self.db.read_rows(_ACTIVE_USERS,
                                                    {"usernames": sorted(holding)})}

    def directory(self, variant: str) -> list[tuple[str, str]]:
        """(username, full name) of the people of ``variant``'s organisation, by name: whom
        a form's person fields offer."""
        units, _, holding = self._snapshot()
        usernames = [u for u, held in holding.items()
                     if any(getattr(units.get(unit), "variant", None) == variant
                            for unit, _ in held)]
        if not usernames:
            return []
        with self.db.reading() as session:
            found = [(username, full_name) for username, full_name in session.execute(
                select(User.username, User.full_name).where(
                    User.username.in_(usernames), User.active.is_(True)))]
        return sorted(found, key=lambda pair: (pair[1], pair[0]))

    def units_named(self, variant: str, unit_ids: Iterable[str]) -> set[str]:
        """Those of ``unit_ids`` that are units of ``variant``'s organisation (whom a form's
        unit fields may name)."""
        wanted = set(unit_ids)
        found = {u.id for u in self._tree().values()
                 if u.id in wanted and u.variant == variant}
        if found != wanted:          # perhaps added since the tree was read
            with self.db.reading() as session:
                found |= set(session.scalars(select(OrgUnit.id).where(
                    OrgUnit.id.in_(wanted - found), OrgUnit.variant == variant)))
        return found

    def unit_directory(self, variant: str) -> list[tuple[str, str, int]]:
        """(id, name, depth) of the units of ``variant``'s organisation, each root followed
        by the units under it, by name: what a form's unit fields offer."""
        units = [u for u in self._tree().values() if u.variant == variant]
        children: dict[str | None, list[Unit]] = {}
        ids = {u.id for u in units}
        for unit in units:
            parent = unit.parent_id if unit.parent_id in ids else None
            children.setdefault(parent, []).append(unit)
        for siblings in children.values():
            siblings.sort(key=lambda u: (u.name, u.id))
        found: list[tuple[str, str, int]] = []

        def walk(parent: str | None, depth: int) -> None:
            for unit in children.get(parent, []):
                found.append((unit.id, unit.name, depth))
                walk(unit.id, depth + 1)
        walk(None, 0)
        return found

    def units_of(self, username: str) -> list[str]:
        return list(dict.fromkeys(unit for unit, _ in self._snapshot()[2].get(username, ())))

    def tagged(self, under_unit_id: str, tag: str) -> Unit | None:
        """The first unit with ``tag`` in the subtree of ``under_unit_id`` (itself included)."""
        for unit in self.subtree(under_unit_id):
            if tag in (unit.tags or []):
                return unit
        return None

    def subtree(self, unit_id: str) -> list[Unit]:
        """The unit and every unit below it, level by level, each level's units of one
        parent in the order of their ids. (A queue, where taking from the front of a list
        moved every unit still queued: a province's 50,000 communes took the opening
        script of a reporting cycle past its CPU limit.)"""
        root = self.unit(unit_id)
        units = sorted((u for u in self._tree().values() if u.variant == root.variant),
                       key=_UNIT_ID)
        children: dict[str | None, list[Unit]] = {}
        for unit in units:
            children.setdefault(unit.parent_id, []).append(unit)
        result, queue = [], deque([root])
        while queue:
            unit = queue.popleft()
            result.append(unit)
            queue.extend(children.get(unit.id, []))
        return result

    def reporting_units(self, unit_id: str, kinds: Iterable[str] = ("department", "commune"),
                        exclude_tags: Iterable[str] = ()) -> list[str]:
        """Units below ``unit_id`` of the given kinds: who reports in a reporting cycle."""
        kinds, excluded = set(kinds), frozenset(exclude_tags)
        return [u.id for u in self.subtree(unit_id)[1:]
                if u.kind in kinds and not (excluded and excluded.intersection(u.tags or ()))]

    # --- roles ---------------------------------------------------------------------------
    def resolve(self, role: str, *, proposer: str | None, unit_id: str | None,
                settings: Mapping, data: Mapping | None = None,
                assignee_from: str | None = None) -> Resolution:
        """Usernames who may act in ``role`` for an instance started by ``proposer`` in
        ``unit_id``. A task whose ``assigneeFrom`` property names a data variable (one
        member's ballot in a vote) goes to the user named there."""
        data = data or {}
        with self.consistent():
            found = self._resolve(role, proposer=proposer, unit_id=unit_id,
                                  settings=settings, data=data, assignee_from=assignee_from)
        if proposer and not assignee_from and (
                role_named(role, settings).except_proposer
                or role_named(found.role, settings).except_proposer):
            return Resolution([u for u in found.usernames if u != proposer], found.unit_id,
                              found.role, found.positions)
        return found

    def _resolve(self, role: str, *, proposer: str | None, unit_id: str | None,
                 settings: Mapping, data: Mapping, assignee_from: str | None) -> Resolution:
        if assignee_from:
            named = data.get(assignee_from)
            return Resolution([named] if isinstance(named, str) else [], unit_id, role)
        rule = role_named(role, settings)
        if rule.role_from:
            named_role = str(data.get(rule.role_from) or rule.otherwise_role or "")
            if not named_role or named_role == role:
                raise InvalidData(f"role '{role}': the data field '{rule.role_from}' names "
                                  "no role", code="org.role_field_empty",
                                  params={"role": role, "field": rule.role_from})
            role, rule = named_role, role_named(named_role, settings)
        if rule.person == "proposer":
            return Resolution([proposer] if proposer else [], unit_id, role)
        if rule.people_from:
            people = data.get(rule.people_from)
            if people:
                return Resolution([str(u) for u in people], unit_id, role)
            if rule.otherwise == "proposer":
                return Resolution([proposer] if proposer else [], unit_id, role)
            if not rule.positions:
                return Resolution([], unit_id, role)
        base = (data.get(rule.unit_from) if rule.unit_from else None) or unit_id
        if not base:
            raise InvalidData(f"role '{role}' needs the case's unit (proposer_unit)",
                              code="org.role_needs_unit", params={"role": role})
        target = self._unit_for(rule, str(base))
        if target is None:
            return Resolution([], None, role)
        people = self.members(target.id, rule.positions)
        if rule.except_proposer and proposer and not [u for u in people if u != proposer]:
            # the proposer alone holds the positions there: the next of the role's places
            for place in rule.unit[rule.unit.index(self._place_of(rule, str(base), target))
                                   + 1:]:
                later = self._unit_for(Role(rule.name, rule.positions, (place,), rule.tag),
                                       str(base))
                if later is not None and [u for u in self.members(later.id, rule.positions)
                                          if u != proposer]:
                    return Resolution(self.members(later.id, rule.positions), later.id, role,
                                      rule.positions)
        return Resolution(people, target.id, role, rule.positions)

    def _place_of(self, rule: Role, unit_id: str, found: Unit) -> str:
        """Which of the role's places gave ``found``."""
        for place in rule.unit:
            candidate = self._unit_for(Role(rule.name, rule.positions, (place,), rule.tag),
                                       unit_id)
            if candidate is not None and candidate.id == found.id:
                return place
        return rule.unit[-1]

    def _unit_for(self, rule: Role, unit_id: str) -> Unit | None:
        """The unit a role's people are found in, from the case's unit: the first of the
        role's places that exists (and holds a unit with the role's tag, if it has one)."""
        for place in rule.unit:
            if place == "case":
                found: Unit | None = self.unit(unit_id)
            elif place == "agency":
                found = self.agency_of(unit_id)
            elif place == "superior_agency":
                found = self.superior_agency_of(unit_id)
            else:
                found = self.province_of(unit_id)
            if found is not None and rule.tag:
                found = self.tagged(found.id, rule.tag)
            if found is not None:
                return found
        return None

    def role_unit(self, role: str, unit_id: str, settings: Mapping) -> str | None:
        """The unit a role's people are found in for a case of ``unit_id`` (the agency
        whose collective meets for a decider, say); None when there is none."""
        found = self._unit_for(role_named(role, settings), unit_id)
        return found.id if found is not None else None

    def heads_above(self, username: str, unit_id: str | None) -> list[str]:
        """Whom to tell when ``username`` is late: the head of their agency, or the superior
        agency's head when they are that head themselves."""
        with self.consistent():
            return self._heads_above(username, unit_id)

    def _heads_above(self, username: str, unit_id: str | None) -> list[str]:
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

    def _reporting_units_of(self, unit_id: str, kinds: tuple, settings: Mapping) -> list[str]:
        """Who reports in a cycle of ``unit_id``: units of ``kinds`` below it (else of the
        settings' ``reporting.unit_kinds``, else every agency), less those carrying one of
        ``reporting.exclude_tags``."""
        reporting = settings.get("reporting") or {}
        kinds = kinds or tuple(reporting.get("unit_kinds") or AGENCY_KINDS)
        return self.reporting_units(unit_id, kinds, reporting.get("exclude_tags") or ())

    def sandbox_functions(self, settings: Callable[[], Mapping]) -> dict:
        """Read-only look-ups offered to BPMN scripts (``settings``: those of the variant
        whose step runs)."""
        return {
            "agency_of": lambda unit_id: self.agency_of(unit_id).id,
            "agency_kind": lambda unit_id: self.agency_of(unit_id).kind,
            "members_of": lambda unit_id, *positions: self.members(unit_id, positions),
            "positions_of": lambda username, unit_id=None: self.positions(username, unit_id),
            "role_members": lambda role, proposer, unit_id: self.resolve(
                role, proposer=proposer, unit_id=unit_id, settings=settings()).usernames,
            "reporting_units_of": lambda unit_id, *kinds: self._reporting_units_of(
                unit_id, kinds, settings()),
            "unit_name": lambda unit_id: self.unit(unit_id).name,
            "province_of": lambda unit_id: self.province_of(unit_id).id,
            "role_unit": lambda role, unit_id: self.role_unit(role, unit_id, settings()),
        }
