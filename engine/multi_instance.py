"""Workflows with many subprocesses (a multi-instance subprocess per reporting unit)."""
from __future__ import annotations

import sys


# SpiffWorkflow's task iterator adds a level of depth for every subprocess it enters but
# climbs back only within the subprocess, so each instance of a multi-instance subprocess it
# passes leaves one level behind; at its default max_depth of 1000 it stops descending, and
# the tasks of the later instances went missing (a reporting cycle for 2,000 units opened 993
# report tasks). The engine lists a workflow's tasks without that bound.
UNBOUNDED_DEPTH = sys.maxsize


def all_tasks(workflow, **filters) -> list:
    """``workflow.get_tasks(**filters)`` through every subprocess, however many."""
    return workflow.get_tasks(max_depth=UNBOUNDED_DEPTH, **filters)
