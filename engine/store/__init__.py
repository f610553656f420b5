"""Persistence: SQLAlchemy models, sessions and Alembic migrations."""
from .db import Database, default_database_url
from .models import (AuditEvent, Decision, Definition, Grant, Handover, HumanTask,
                     IdentityLink,
                     Instance, InstanceStateDelta, InstanceStatus,
                     Membership, MessageSubscription, OrgGeneration,
                     OrgUnit, TaskCandidate, TaskStatus, Timer, TimerStatus, User)

__all__ = ["Database", "default_database_url", "AuditEvent", "Decision", "Definition", "Grant",
           "Handover", "HumanTask", "IdentityLink", "Instance", "InstanceStateDelta",
           "InstanceStatus", "Membership",
           "MessageSubscription", "OrgGeneration", "OrgUnit", "TaskCandidate", "TaskStatus",
           "Timer", "TimerStatus", "User"]
