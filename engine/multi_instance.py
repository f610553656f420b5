"""Parallel multi-instance activities whose instances do not carry the collections.

SpiffWorkflow gives each instance of a parallel multi-instance activity a copy of the
activity's whole data, including the collection it iterates (``loopDataInputRef``) and the
one its instances fill (``loopDataOutputRef``); an embedded subprocess then deep-copies that
data again into its start. A reporting cycle iterates its reporting units: with N units each
of the N instances held the list of all N, so opening a cycle cost O(N²) in time, memory,
data-size checks and stored state (5,000 units: 25 million copied list items).

Here an instance is created while the two collections are set aside: it sees its own item
(``inputDataItem``) and the rest of the activity's data, as before, but not the collections;
its result still goes into the output collection (``outputDataItem``), which is back in place
when instances finish. A script inside an instance that needs the whole collection reads it
before the activity (for instance into a smaller value of its own).

Registered in :class:`engine.serialization.Codec` under SpiffWorkflow's own type name, so
specs deployed before load as this class too.
"""
from __future__ import annotations

import sys

from SpiffWorkflow.spiff.specs.defaults import ParallelMultiInstanceTask as _SpiffParallel


class ParallelMultiInstanceTask(_SpiffParallel):
    def create_child(self, my_task, item, key_or_index=None):
        aside = {}
        for collection in (self.data_input, self.data_output):
            name = getattr(collection, "bpmn_id", None)
            if name is not None and name in my_task.data:
                aside[name] = my_task.data.pop(name)
        try:
            super().create_child(my_task, item, key_or_index)
        finally:
            my_task.data.update(aside)


# SpiffWorkflow's task iterator adds a level of depth for every subprocess it enters but
# climbs back only within the subprocess, so each instance of a multi-instance subprocess it
# passes leaves one level behind; at its default max_depth of 1000 it stops descending, and
# the tasks of the later instances went missing (a reporting cycle for 2,000 units opened 993
# report tasks). The engine lists a workflow's tasks without that bound.
UNBOUNDED_DEPTH = sys.maxsize


def all_tasks(workflow, **filters) -> list:
    """``workflow.get_tasks(**filters)`` through every subprocess, however many."""
    return workflow.get_tasks(max_depth=UNBOUNDED_DEPTH, **filters)
