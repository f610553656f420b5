"""The rules of Decree 73 procedures, implemented once and offered to every variant's BPMN
as sandbox functions (scripts, conditions and the form rules tasks declare).

Canonical fields: ``vote`` (for | against), ``decision`` (approve | reject),
``override_reason``, ``refusal_reasons``, ``outcome`` (completed | not_completed | damaged),
``protection_decision`` (not_liable | exempted | reduced | refused).
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

VOTES = ("for", "against")
DECISIONS = ("approve", "reject")
OUTCOMES = ("completed", "not_completed", "damaged")
PROTECTION_DECISIONS = ("not_liable", "exempted", "reduced", "refused")


def eligible_voters(leadership: Iterable[str], proposer: str | None) -> list[str]:
    """The collective leadership, less the proposer (a deputy who proposes does not vote)."""
    return [member for member in dict.fromkeys(leadership) if member != proposer]


def count_votes(ballots: Mapping[str, str], eligible: Iterable[str], head: str | None) -> str:
    """'approved' when strictly more than half of the votes cast by eligible members are for;
    a tie follows the head's vote; otherwise 'rejected'. Ballots of others are ignored."""
    eligible = set(eligible)
    cast = {who: vote for who, vote in ballots.items() if who in eligible and vote in VOTES}
    votes_for = sum(1 for vote in cast.values() if vote == "for")
    votes_against = len(cast) - votes_for
    if votes_for > votes_against:
        return "approved"
    if votes_for == votes_against and votes_for and head is not None \
            and cast.get(head) == "for":
        return "approved"
    return "rejected"


def route_proposal(proposer_positions: Iterable[str], agency_kind: str,
                   via_home_affairs_for: Iterable[str] = ()) -> dict:
    """Who decides a proposal (Art. 7 k.3–4, with the province's routing).

    An ordinary official's proposal goes to the head of their agency; a head's goes to the
    head of the superior agency. Where the variant names positions whose proposals go via Sở
    Nội vụ to the Chairman (leaders under the province's management), and the proposer's
    agency is directly under the province, the route is home_affairs → chairman.
    """
    positions = set(proposer_positions)
    if positions & set(via_home_affairs_for) and agency_kind in ("department", "commune"):
        return {"route": "home_affairs", "decider_role": "chairman"}
    if "head" in positions:
        return {"route": "superior_head", "decider_role": "superior_head"}
    return {"route": "head", "decider_role": "head"}


def council_size_ok(size: int, min_size: int = 5, max_size: int = 9) -> bool:
    return min_size <= size <= max_size


def council_result(ballots: Mapping[str, str], members: Iterable[str], quorum: float = 2 / 3,
                   majority: float = 0.5) -> str:
    """'no_quorum', 'recommend_approve' (share of for-votes among votes cast strictly above
    ``majority``) or 'recommend_reject'."""
    members = list(dict.fromkeys(members))
    cast = [vote for who, vote in ballots.items() if who in members and vote in VOTES]
    if not members or len(cast) < math.ceil(quorum * len(members) - 1e-9):
        return "no_quorum"
    share = sum(1 for v in cast if v == "for") / len(cast)
    return "recommend_approve" if share > majority else "recommend_reject"


def outcome_path(outcome: str) -> str:
    """Completed work is recognised; failed or damaging work goes to protection review."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}; expected one of {', '.join(OUTCOMES)}")
    return "recognition" if outcome == "completed" else "protection"


def allowed_protection_decisions(outcome: str | None, abuse: bool = False) -> tuple[str, ...]:
    """Art. 11: completed → not liable; not completed (policy followed) → exempted; with
    damage → exemption, waiver or reduction considered; abuse (Art. 6) voids protection."""
    if abuse:
        return ("refused",)
    return {"completed": ("not_liable",),
            "not_completed": ("exempted", "refused"),
            "damaged": ("exempted", "reduced", "refused")}.get(outcome or "",
                                                               PROTECTION_DECISIONS)


SANDBOX_FUNCTIONS = {
    "eligible_voters": eligible_voters,
    "count_votes": count_votes,
    "route_proposal": route_proposal,
    "council_size_ok": council_size_ok,
    "council_result": council_result,
    "outcome_path": outcome_path,
    "allowed_protection_decisions": allowed_protection_decisions,
}
