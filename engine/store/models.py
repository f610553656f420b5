"""Database tables: definitions, instances and their queryable projections.

The serialized workflow in ``instances.state`` (column ``state_data``, compressed), with the
deltas written after it (``instance_state_deltas``), is the truth; ``human_tasks``,
``timers``, ``message_subscriptions`` and ``audit_events`` are projections written in the
same transaction so that inbox and monitoring queries never deserialize a workflow.
"""
from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, NamedTuple

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True)}
    if TYPE_CHECKING:       # every mapped class here has a Table (SQLAlchemy types FromClause)
        __table__: ClassVar[Table]


class InstanceStatus(StrEnum):
    RUNNING = "running"
    SUSPENDED = "suspended"
    INCIDENT = "incident"
    COMPLETED = "completed"
    TERMINATED = "terminated"


class TaskStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class OpenTaskRow(NamedTuple):
    """Of an open task's row, what a step's projection compares with the workflow (and
    cancels the task by, when the step left it): read without the rest of the row."""
    id: str
    element_id: str
    status: TaskStatus


class TimerStatus(StrEnum):
    PENDING = "pending"
    FAILED = "failed"      # after the scheduler's last attempt
    FIRED = "fired"
    CANCELLED = "cancelled"


def status_column(statuses: type[StrEnum]) -> Enum:
    """A status stored as its value in the VARCHAR(16) column it always had (no database
    enum type, no check constraint: no migration), read back as the enum member. A string
    that is no status may still be compared with it (a search filter typed in a URL finds
    nothing). Only the runtime (engine/runtime) changes statuses, each change with its
    audit entry."""
    return Enum(statuses, native_enum=False, create_constraint=False, length=16,
                values_callable=lambda members: [m.value for m in members])


class Definition(Base):
    """One immutable deployed version of a BPMN process of a variant."""

    __tablename__ = "definitions"
    __table_args__ = (
        UniqueConstraint("variant", "key", "version", name="uq_definition_version"),
        Index("ix_definition_hash", "variant", "key", "content_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    variant: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(128))
    version: Mapped[int]
    name: Mapped[str | None] = mapped_column(String(255))
    content_hash: Mapped[str] = mapped_column(String(64))
    sources: Mapped[dict] = mapped_column(JSON)          # file name -> BPMN/DMN text
    spec: Mapped[str] = mapped_column(Text)              # serialized spec + subprocess specs
    deployed_at: Mapped[datetime]
    deployed_by: Mapped[str] = mapped_column(String(128))


class Instance(Base):
    """A running or finished process instance; ``version`` guards concurrent writers."""

    __tablename__ = "instances"
    __table_args__ = (
        Index("ix_instance_status", "status", "variant", "definition_key"),
        Index("ix_instance_business_key", "business_key"),
        Index("ix_instance_started_by", "started_by", "started_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("definitions.id"), index=True)
    variant: Mapped[str] = mapped_column(String(64))
    definition_key: Mapped[str] = mapped_column(String(128))
    business_key: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[InstanceStatus] = mapped_column(status_column(InstanceStatus))
    # the serialized workflow, compressed (engine.serialization)
    state: Mapped[bytes] = mapped_column("state_data", LargeBinary)
    state_format: Mapped[str] = mapped_column(String(32))
    # how many rows of instance_state_deltas follow that snapshot (none: a load reads none)
    state_deltas: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    started_by: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    incident_message: Mapped[str | None] = mapped_column(Text)
    incident_element: Mapped[str | None] = mapped_column(String(255))
    incident_at: Mapped[datetime | None]
    stage: Mapped[str | None] = mapped_column(String(32))
    latest_decision: Mapped[str | None] = mapped_column(String(32))
    unit_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # head of the instance's audit chain (engine.audit): how many events, last event's hash
    audit_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    audit_head: Mapped[str | None] = mapped_column(String(64))

    __mapper_args__ = {"version_id_col": version}


class InstanceStateDelta(Base):
    """What one step changed in an instance's state since its snapshot (``instances.state``):
    the changed parts, compressed (engine.serialization). ``seq`` is the delta's place after
    the snapshot (1, 2, ...); a load applies the deltas in that order. A snapshot removes
    them."""

    __tablename__ = "instance_state_deltas"

    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class HumanTask(Base):
    """A user task as the inbox sees it."""

    __tablename__ = "human_tasks"
    __table_args__ = (
        Index("ix_human_task_inbox", "status", "lane"),
        Index("ix_human_task_instance", "instance_id", "status"),
        # the instance id last: an official's instances are read from the index alone
        Index("ix_human_task_assignee", "assignee", "status", "instance_id"),
        Index("ix_human_task_completed_by", "completed_by", "instance_id"),
        Index("ix_human_task_unit", "unit_id", "status", "instance_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)   # SpiffWorkflow task id
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    element_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    lane: Mapped[str | None] = mapped_column(String(128))
    form: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str | None] = mapped_column(String(64))
    unit_id: Mapped[str | None] = mapped_column(String(64))
    # the positions (comma-separated) its candidates were found through in unit_id, "" when
    # they were named personally (the proposer, people in the data), NULL: not recorded
    positions: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[TaskStatus] = mapped_column(status_column(TaskStatus))
    assignee: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    due_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    completed_by: Mapped[str | None] = mapped_column(String(128))


class Timer(Base):
    """A pending timer of an instance, claimed by schedulers with a lock and its expiry."""

    __tablename__ = "timers"
    __table_args__ = (
        UniqueConstraint("instance_id", "task_id", name="uq_timer_task"),
        Index("ix_timer_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str | None] = mapped_column(
        ForeignKey("instances.id", ondelete="CASCADE"))
    definition_id: Mapped[int | None] = mapped_column(ForeignKey("definitions.id"))
    task_id: Mapped[str | None] = mapped_column(String(36))
    element_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    due_at: Mapped[datetime]
    status: Mapped[TimerStatus] = mapped_column(status_column(TimerStatus))
    lock_owner: Mapped[str | None] = mapped_column(String(128))
    lock_expires_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    fired_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class MessageSubscription(Base):
    """An instance waiting for a message (catch event or receive task)."""

    __tablename__ = "message_subscriptions"
    __table_args__ = (
        Index("ix_subscription_name", "message_name", "instance_id"),
        # a step drops, and a retry reads, an instance's subscriptions (migration 0026)
        Index("ix_subscription_instance", "instance_id", "task_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    task_id: Mapped[str] = mapped_column(String(36))
    element_id: Mapped[str] = mapped_column(String(255))
    message_name: Mapped[str] = mapped_column(String(255))


class AuditEvent(Base):
    """Append-only history: who did what, when, to which element, with which data."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_instance", "instance_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    instance_id: Mapped[str | None] = mapped_column(String(36))
    definition_id: Mapped[int | None]
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    element_id: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict | None] = mapped_column(JSON)
    # place in its chain (1, 2, …) and SHA-256 over its fields and the previous entry's hash
    seq: Mapped[int | None] = mapped_column(Integer)
    hash: Mapped[str | None] = mapped_column(String(64))


class AuditHead(Base):
    """Head of an audit chain that has no instance row: 'system' (deployments) and events
    naming an instance that does not exist."""

    __tablename__ = "audit_heads"

    chain: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    head: Mapped[str] = mapped_column(String(64))


class TaskCandidate(Base):
    """Who may claim and complete an open human task (resolved from its lane's role)."""

    __tablename__ = "task_candidates"
    __table_args__ = (Index("ix_candidate_user_instance", "username", "instance_id"),
                      # an inbox reads the open candidacies only (migration 0010)
                      Index("ix_candidate_open", "username", "task_id",
                            postgresql_where=text("task_open"),
                            sqlite_where=text("task_open = 1")))

    task_id: Mapped[str] = mapped_column(ForeignKey("human_tasks.id", ondelete="CASCADE"),
                                         primary_key=True)
    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    # the task's instance, copied: an official's instances come from one index
    instance_id: Mapped[str] = mapped_column(String(36))
    # whether the task is open, kept so by a trigger on human_tasks.status (migration 0010)
    task_open: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class Decision(Base):
    """A canonical decision field recorded as it was made, for reports in every variant."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decision_report", "variant", "field", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"),
                                             index=True)
    variant: Mapped[str] = mapped_column(String(64))
    definition_key: Mapped[str] = mapped_column(String(128))
    unit_id: Mapped[str | None] = mapped_column(String(64))
    element_id: Mapped[str | None] = mapped_column(String(255))
    field: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]


class OrgUnit(Base):
    """A node of a variant's organisation tree (province, department, commune, division…)."""

    __tablename__ = "org_units"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    variant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    tags: Mapped[list] = mapped_column(JSON, default=list)


class User(Base):
    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    full_name: Mapped[str] = mapped_column(String(255))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    email: Mapped[str | None] = mapped_column(String(255))
    # how notifications reach the user by e-mail: immediate | digest | off
    notification_mode: Mapped[str] = mapped_column(String(16), default="immediate",
                                                   server_default="immediate")
    phone: Mapped[str | None] = mapped_column(String(32))


class IdentityLink(Base):
    """An official's account at the deployment's OpenID Connect provider: the value the
    provider gives in the configured claim (its subject, by default) for them. Sign-in
    through the provider maps that value to the official here, never by trusting a name the
    provider sends; an administrator makes the link."""

    __tablename__ = "identity_links"
    __table_args__ = (
        UniqueConstraint("issuer", "username", name="uq_identity_link_official"),
    )

    issuer: Mapped[str] = mapped_column(String(255), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.username", ondelete="CASCADE"),
                                          index=True)
    linked_at: Mapped[datetime]


class Membership(Base):
    """A position a user holds in a unit: head, deputy, staff, party_secretary,
    council_member (a user may hold several, in several units)."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("username", "unit_id", "position", name="uq_membership"),
        Index("ix_membership_unit", "unit_id", "position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.username", ondelete="CASCADE"),
                                          index=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"))
    position: Mapped[str] = mapped_column(String(32))
    # when the position was taken and, if known, when it ends (dates of the appointment
    # decision; a membership that ended is removed, its history is in the audit log)
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)


class Handover(Base):
    """A single-holder position (head, acting head) of a unit passing from one official to
    the next on ``effective_on``: ``pending`` until that day comes (the scheduler carries it
    out on the engine's clock), then ``done`` (``moved``: the open tasks that passed) or
    ``cancelled`` (the appointment changed meanwhile)."""

    __tablename__ = "handovers"
    __table_args__ = (Index("ix_handover_due", "status", "effective_on"),
                      Index("ix_handover_variant", "variant", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    variant: Mapped[str] = mapped_column(String(64))
    unit_id: Mapped[str] = mapped_column(String(64))
    position: Mapped[str] = mapped_column(String(32))
    from_username: Mapped[str] = mapped_column(String(128))
    to_username: Mapped[str] = mapped_column(String(128))
    effective_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    done_at: Mapped[datetime | None]
    moved: Mapped[list | None] = mapped_column(JSON)

    def conclude(self, status: str, moved: list, at: datetime) -> None:
        """Ends the handover: ``done`` with the tasks that passed, or ``cancelled``."""
        self.status, self.moved, self.done_at = status, moved, at


class OrgGeneration(Base):
    """One row counting the changes of the organisation (units, officials, memberships):
    bumped in the transaction of every change, so a process's cached tree knows at once
    that it is stale (engine.org)."""

    __tablename__ = "org_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


class Grant(Base):
    """Administrator or designer rights of a user over a variant ('*' for every variant)."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("username", "variant", "grant", name="uq_grant"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.username", ondelete="CASCADE"))
    variant: Mapped[str] = mapped_column(String(64))
    grant: Mapped[str] = mapped_column(String(16))


class LoginAttempt(Base):
    """A failed sign-in, kept for a while to slow down password guessing; ``device`` is
    the trusted device it came from (a client that signed in as the user before), if any."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempt", "username", "at"),
                      Index("ix_login_attempt_address", "address", "at"),
                      Index("ix_login_attempt_device", "device", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128))
    address: Mapped[str] = mapped_column(String(64))
    device: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime]


class Notification(Base):
    """What a user is told in the app (always kept, whatever their e-mail preference)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notification_inbox", "username", "read_at", "id"),
                      Index("ix_notification_digest", "email_status", "username"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(36))
    instance_id: Mapped[str | None] = mapped_column(String(36), index=True)
    definition_id: Mapped[int | None]
    link: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    read_at: Mapped[datetime | None]
    # none (no e-mail) | outbox (an immediate message) | digest (waits for the daily
    # digest) | digested (went out in one)
    email_status: Mapped[str] = mapped_column(String(16))
    outbox_id: Mapped[int | None]
    # set with the message it was sent as: one flush writes the message, then this row
    # with its id (the column has no foreign key in the schema)
    outbox: Mapped[OutboxMessage | None] = relationship(
        "OutboxMessage", primaryjoin="foreign(Notification.outbox_id) == OutboxMessage.id")


class OutboxMessage(Base):
    """An e-mail to send, written in the transaction of the event that caused it and sent
    by a scheduler: pending → sending → sent (or failed after its attempts, or unknown when
    a sender died while handing it to the SMTP server)."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),
                      UniqueConstraint("username", "digest_day", name="uq_outbox_digest"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128))
    recipient: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    digest_day: Mapped[str | None] = mapped_column(String(10))   # local date of a digest
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lock_owner: Mapped[str | None] = mapped_column(String(128))
    lock_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class Attachment(Base):
    """A file attached to a form. Forms hold only its id and name; the bytes live here so a
    backup of the database holds them too."""

    __tablename__ = "attachments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_by: Mapped[str] = mapped_column(String(128), index=True)
    uploaded_at: Mapped[datetime]


class DocumentRegister(Base):
    """The register (sổ đăng ký) of an issuing agency for one year and kind of document:
    the last number given. A number is taken by incrementing it in the transaction that
    issues the document, so numbers are gapless and unique (migration 0012)."""

    __tablename__ = "document_registers"

    agency_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)


class Document(Base):
    """An issued official document: immutable (triggers refuse UPDATE and DELETE), its
    DOCX stored with its SHA-256, which the case's audit chain records. A correction is a
    new document naming the one it ``replaces``."""

    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("agency_id", "year", "kind", "number", name="uq_document_number"),
        Index("ix_document_instance", "instance_id", "issued_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id"))
    variant: Mapped[str] = mapped_column(String(64))
    element_id: Mapped[str | None] = mapped_column(String(255))
    template: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    agency_id: Mapped[str] = mapped_column(String(64))
    year: Mapped[int] = mapped_column(Integer)
    number: Mapped[int] = mapped_column(Integer)
    reference: Mapped[str] = mapped_column(String(128))      # số/ký hiệu: 05/QĐ-SXD
    title: Mapped[str] = mapped_column(String(500))          # trích yếu
    legal_basis: Mapped[str | None] = mapped_column(Text)
    issued_at: Mapped[datetime]
    issued_by: Mapped[str] = mapped_column(String(128))
    signer: Mapped[str | None] = mapped_column(String(128))
    replaces_id: Mapped[str | None] = mapped_column(ForeignKey("documents.id"))
    correction_reason: Mapped[str | None] = mapped_column(Text)
    context: Mapped[dict] = mapped_column(JSON)              # what the template was given
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)      # the DOCX


class DocumentPdf(Base):
    """The PDF of a document, converted the first time someone asks for it and kept."""

    __tablename__ = "document_pdfs"

    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    rendered_at: Mapped[datetime]


class Draft(Base):
    """The draft of a variant's process folder that its designers edit apart from deploying
    (engine/drafts.py): one per variant, shared by its designers; ``revision`` grows at
    every save, so a save or deployment made on an older revision is refused."""

    __tablename__ = "drafts"

    variant: Mapped[str] = mapped_column(String(64), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)
    based_on: Mapped[int] = mapped_column(Integer)       # newest definition id when made
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime]


class DraftFile(Base):
    """One file of a draft, by its path in the variant folder (``proposal.bpmn``,
    ``forms/plan.schema.json``, ``variant.toml``, ``notifications/…``, ``documents/…``)."""

    __tablename__ = "draft_files"

    variant: Mapped[str] = mapped_column(
        String(64), ForeignKey("drafts.variant", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(255), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
