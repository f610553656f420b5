"""Officials' accounts at the deployment's OpenID Connect provider, and the audit of
sign-ins.

The provider says who signed in with a claim (its subject, or the claim the deployment
chose); an administrator links that value to an official (:class:`IdentityLink`, set with
the official's details in :mod:`engine.orgadmin`). Sign-in maps the value through the link
only: a name the provider sends is never taken for an official's username, so an account
created at the provider grants nothing here until an administrator links it.
"""
from __future__ import annotations

from sqlalchemy import select

from .clock import Clock
from .store import AuditEvent, Database, IdentityLink

ANONYMOUS = "anonymous"      # the audit entry's actor of a refused sign-in of nobody known


class Identities:
    def __init__(self, db: Database, clock: Clock):
        self.db = db
        self.clock = clock

    def official_for(self, issuer: str, subject: str) -> str | None:
        """The username linked to the provider's ``subject``, if any."""
        with self.db.reading() as session:
            link = session.get(IdentityLink, (issuer, subject))
            return link.username if link is not None else None

    def subject_of(self, issuer: str, username: str) -> str | None:
        """The provider's value linked to ``username``, if any."""
        with self.db.reading() as session:
            return session.scalar(select(IdentityLink.subject).where(
                IdentityLink.issuer == issuer, IdentityLink.username == username))

    def record(self, action: str, username: str | None, **details) -> None:
        """An audit entry (system chain) of a sign-in (``signed_in``), a refused one
        (``sign_in_refused``) or a sign-out (``signed_out``)."""
        with self.db.transaction() as session:
            session.add(AuditEvent(instance_id=None, definition_id=None, at=self.clock.now(),
                                   actor=username or ANONYMOUS, action=action,
                                   details={"username": username, **details}))
