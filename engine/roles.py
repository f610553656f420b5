"""Roles that BPMN lanes name, as a variant declares them in its settings (``[roles]`` in
``variant.toml``): whom a lane's tasks go to is data of the procedure, not engine code.

A role is one of:

- ``person = "proposer"``: the case's proposer (whoever started it, or the process's
  ``proposerField``);
- ``people_from = "<field>"``: the usernames listed in a data field (``otherwise =
  "proposer"`` when the field is empty);
- ``role_from = "<field>"``: the role named in a data field (``otherwise_role`` when empty);
- members holding one of ``positions`` in a unit found from the case's unit (or the unit
  named in the data field ``unit_from``): ``unit`` is where to look (``case``, ``agency``,
  ``superior_agency``, ``province``, or a list tried in order), and ``tag`` the first unit
  carrying that tag inside it.

Any role may add ``except_proposer = true``: the case's proposer is never among its people
(nobody gives an opinion, an assessment or a vote on their own case); where the proposer
alone holds the positions in the unit found, the role's next place is tried.

A lane no role declares resolves, by default, to the members of the case's agency whose
position has the lane's name (``head``, ``deputy``…), and ``proposer`` to the proposer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .errors import N_, Problem

PLACES = ("case", "agency", "superior_agency", "province")
KEYS = ("person", "people_from", "otherwise", "role_from", "otherwise_role", "positions",
        "unit", "unit_from", "tag", "label", "label_en", "except_proposer")


@dataclass(frozen=True)
class Role:
    name: str
    positions: tuple[str, ...] = ()
    unit: tuple[str, ...] = ("agency",)
    tag: str | None = None
    unit_from: str | None = None
    people_from: str | None = None
    otherwise: str | None = None
    role_from: str | None = None
    otherwise_role: str | None = None
    person: str | None = None
    except_proposer: bool = False

    @classmethod
    def of(cls, name: str, spec: Mapping) -> Role:
        unit = spec.get("unit", "agency")
        return cls(name, tuple(spec.get("positions", ())),
                   tuple([unit] if isinstance(unit, str) else unit), spec.get("tag"),
                   spec.get("unit_from"), spec.get("people_from"), spec.get("otherwise"),
                   spec.get("role_from"), spec.get("otherwise_role"), spec.get("person"),
                   bool(spec.get("except_proposer", False)))


def role_named(name: str, settings: Mapping) -> Role:
    """The role a lane names, as the settings declare it, else the default (see above)."""
    spec = (settings.get("roles") or {}).get(name)
    if spec is not None:
        return Role.of(name, spec)
    if name == "proposer":
        return Role(name, person="proposer")
    return Role(name, positions=(name,))


def declared_roles(settings: Mapping) -> tuple[str, ...]:
    return tuple(settings.get("roles") or {})


def role_problems(settings: Mapping, file_label: str) -> list[Problem]:
    """What in a ``[roles]`` section the engine would not understand, by role and key."""
    problems = []
    roles = settings.get("roles") or {}
    if not isinstance(roles, dict):
        return [Problem(file_label, "roles must be a table of [roles.<lane name>] tables",
                        code=N_("roles.table"))]
    for name, spec in roles.items():
        where = f"{file_label}: roles.{name}"
        if not isinstance(spec, dict):
            problems.append(Problem(where, "must be a table", code=N_("roles.role_table"),
                                    params={"role": name}))
            continue
        for key in spec:
            if key not in KEYS:
                problems.append(Problem(where, f"'{key}' is not one of: {', '.join(KEYS)}",
                                        code=N_("roles.key"),
                                        params={"role": name, "key": key,
                                                "known": ", ".join(KEYS)}))
        unit = spec.get("unit", "agency")
        for place in [unit] if isinstance(unit, str) else unit:
            if place not in PLACES:
                problems.append(Problem(where, f"unit '{place}' is not one of: "
                                               + ", ".join(PLACES), code=N_("roles.place"),
                                        params={"role": name, "place": place,
                                                "known": ", ".join(PLACES)}))
        if spec.get("person") not in (None, "proposer"):
            problems.append(Problem(where, "person can only be \"proposer\"",
                                    code=N_("roles.person"), params={"role": name}))
        if spec.get("except_proposer") not in (None, True, False):
            problems.append(Problem(where, "except_proposer must be true or false",
                                    code=N_("roles.except_proposer"), params={"role": name}))
        if spec.get("otherwise") not in (None, "proposer"):
            problems.append(Problem(where, "otherwise can only be \"proposer\"",
                                    code=N_("roles.otherwise"), params={"role": name}))
        if spec.get("otherwise_role") not in (None, *roles):
            problems.append(Problem(where, f"otherwise_role '{spec['otherwise_role']}' is "
                                           "not a declared role", code=N_("roles.otherwise_role"),
                                    params={"role": name, "other": spec["otherwise_role"]}))
        kinds = [k for k in ("person", "people_from", "role_from", "positions") if k in spec]
        if not kinds:
            problems.append(Problem(where, "names nobody: give positions, person, "
                                           "people_from or role_from", code=N_("roles.nobody"),
                                    params={"role": name}))
        positions = spec.get("positions", [])
        if not isinstance(positions, list) or not all(isinstance(p, str) for p in positions):
            problems.append(Problem(where, "positions must be a list of position names",
                                    code=N_("roles.positions"), params={"role": name}))
    return problems
