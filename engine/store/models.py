"""Database tables: definitions, instances and their queryable projections.

The serialized workflow in ``instances.state`` is the truth; ``human_tasks``, ``timers``,
``message_subscriptions`` and ``audit_events`` are projections written in the same
transaction so that inbox and monitoring queries never deserialize a workflow.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True)}


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
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("definitions.id"), index=True)
    variant: Mapped[str] = mapped_column(String(64))
    definition_key: Mapped[str] = mapped_column(String(128))
    business_key: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(Text)
    state_format: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    started_by: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    incident_message: Mapped[str | None] = mapped_column(Text)
    incident_element: Mapped[str | None] = mapped_column(String(255))
    incident_at: Mapped[datetime | None]

    __mapper_args__ = {"version_id_col": version}


class HumanTask(Base):
    """A user task as the inbox sees it."""

    __tablename__ = "human_tasks"
    __table_args__ = (
        Index("ix_human_task_inbox", "status", "lane"),
        Index("ix_human_task_instance", "instance_id", "status"),
        Index("ix_human_task_assignee", "assignee", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)   # SpiffWorkflow task id
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    element_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    lane: Mapped[str | None] = mapped_column(String(128))
    form: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))          # open | completed | cancelled
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
    status: Mapped[str] = mapped_column(String(16))           # pending | fired | cancelled
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
