"""The runtime: running instances of deployed definitions (see :mod:`.instances`), the
administrators' and scheduler's operations on them (:mod:`.management`), the schedules of
timer start events (:mod:`.schedules`), and the projections of their state that people and
the scheduler query (:mod:`.projection`). It is the one writer of the statuses of
instances, human tasks and timers, each change with its audit entry."""
from .instances import Runtime
from .projection import EventRows, Projection, WaitingEvents
from .steps import (ACTIVE_STATUSES, COMPLETED, INCIDENT, RUNNING, SUSPENDED, TERMINATED,
                    Incident)

__all__ = ["Runtime", "EventRows", "Projection", "WaitingEvents", "Incident",
           "ACTIVE_STATUSES", "COMPLETED", "INCIDENT", "RUNNING", "SUSPENDED", "TERMINATED"]
