"""Persistence: SQLAlchemy models, sessions and Alembic migrations."""
from .db import Database, default_database_url
from .models import AuditEvent, Definition, HumanTask, Instance, MessageSubscription, Timer

__all__ = ["Database", "default_database_url", "AuditEvent", "Definition", "HumanTask",
           "Instance", "MessageSubscription", "Timer"]
