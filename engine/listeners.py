"""Step listeners: what happens around a step because a definition declared it.

The runtime tells every listener what one step did (in the spirit of SpiffArena's
``EngineStepDelegate``), twice inside the step's unit of work:

- ``step_saving``: before the instance row is written: the user task completed (with the
  data submitted), the elements the engine completed after it, the stage before. A
  listener may add audit entries and change the instance row (its latest decision).
- ``step_saved``: after the projections: the human tasks the step opened, with their
  candidates.

Decisions and notifications are listeners here, driven by the nd73 declarations of each
element (:mod:`engine.policy`); reporting figures read the decisions they record. None of
them knows a procedure: field names, notification kinds and recipients are data.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session
from SpiffWorkflow.util.task import TaskState

from . import audit, policy
from .errors import ScriptError
from .store import Decision, HumanTask, Instance, TaskCandidate, appends

log = logging.getLogger("nd73.listeners")
MAX_DECISION_VALUE = 64
MAX_CASE_DECISION = 32


def element_id(task) -> str | None:
    spec = task.task_spec
    return getattr(spec, "bpmn_id", None) or spec.name


@dataclass
class Step:
    """What one step did, as listeners see it."""
    session: Session
    instance: Instance
    definition: Any
    actor: str
    now: datetime
    previous_stage: str | None
    completed: list                       # elements the engine completed (Spiff tasks)
    user_task: Any = None                 # the Spiff task a person completed, if any
    task_row: HumanTask | None = None     # and its inbox row
    submitted: dict = field(default_factory=dict)
    opened: list = field(default_factory=list)   # (HumanTask, candidates, Spiff task)
    audit: list = field(default_factory=list)    # entries (rows, audit.entry) to write
    # the official documents the step issued (reference, title, kind, date), which its
    # notifications cite; issuing listeners run before the notifier
    documents: list = field(default_factory=list)

    def proposer(self, data: dict) -> str:
        """The case's proposer: the data field the process names (``proposerField``),
        else whoever started the case."""
        name = policy.process_properties(self.definition).get("proposerField")
        value = data.get(name) if name else None
        return value if isinstance(value, str) and value else self.instance.started_by


class StepListener(Protocol):
    def step_saving(self, step: Step) -> None: ...

    def step_saved(self, step: Step) -> None: ...


class DecisionRecorder:
    """Records the fields a user task declares as decisions (``decisionFields``) in
    ``decisions``, and its ``caseDecisionField`` as the case's latest decision."""

    def step_saving(self, step: Step) -> None:
        if step.user_task is None:
            return
        spec = step.user_task.task_spec
        instance, data = step.instance, step.submitted
        for name in policy.decision_fields(spec):
            if data.get(name) is None:
                continue
            assert step.task_row is not None        # a user task's step has its inbox row
            appends.add(step.session, Decision.__table__, instance_id=instance.id,
                        variant=instance.variant, definition_key=instance.definition_key,
                        unit_id=instance.unit_id, element_id=step.task_row.element_id,
                        field=name, value=str(data[name]).lower()[:MAX_DECISION_VALUE],
                        actor=step.actor, at=step.now)
        case_field = policy.case_decision_field(spec)
        if case_field and data.get(case_field) is not None:
            instance.latest_decision = str(data[case_field])[:MAX_CASE_DECISION]

    def step_saved(self, step: Step) -> None:
        pass


DEFAULT_OPEN_KIND = "task_available"


class Notifier:
    """Sends the notifications elements declare (``nd73:notification``): when a task opens
    (default: ``task_available`` to its candidates), when a person completes a task, when
    the engine passes an element (an end event, a boundary timer: reminders and
    escalations, which are also written to the audit log)."""

    def __init__(self, notifications, org, evaluate):
        self.notifications = notifications
        self.org = org
        self.evaluate = evaluate          # (expression, data) -> value, in the sandbox

    def _applies(self, rule: policy.NotificationRule, data: dict, where: str | None) -> bool:
        if not rule.when:
            return True
        try:
            return bool(self.evaluate(rule.when, data))
        except (ScriptError, Exception) as exc:   # a notification never stops a step
            log.warning("notification %s of %s: condition failed: %s", rule.kind, where, exc)
            return False

    def step_saving(self, step: Step) -> None:
        if step.user_task is not None:
            data = {**step.user_task.data, **step.submitted}
            assert step.task_row is not None        # a user task's step has its inbox row
            for rule in policy.notifications(step.user_task.task_spec, "complete"):
                if self._applies(rule, data, step.task_row.element_id):
                    self._send(step, rule, data, task_row=step.task_row)
        for task in step.completed:
            rules = policy.notifications(task.task_spec, "complete")
            for rule in rules:
                if not self._applies(rule, task.data, element_id(task)):
                    continue
                if rule.to in ("assignee", "assignee_head"):
                    self._late_task(step, task, rule)
                else:
                    self._send(step, rule, task.data)

    def step_saved(self, step: Step) -> None:
        if not step.opened:
            return
        if len(step.opened) > 1:
            self.notifications.prefetch(step.session, [step.instance.started_by] + [
                u for _, people, _ in step.opened for u in people])
        for row, candidates, task in step.opened:
            rules = policy.notifications(task.task_spec, "open")
            if not rules:
                rules = [policy.NotificationRule(DEFAULT_OPEN_KIND, "candidates", "open")]
            for rule in rules:
                if self._applies(rule, task.data, row.element_id):
                    self._send(step, rule, task.data, task_row=row, candidates=candidates)

    def _send(self, step: Step, rule: policy.NotificationRule, data: dict, *,
              task_row: HumanTask | None = None, candidates=()) -> None:
        if rule.to == "proposer":
            people = [step.proposer(data)]
        elif rule.to == "candidates":
            people = list(candidates) or ([] if task_row is None else list(
                step.session.scalars(select(TaskCandidate.username).where(
                    TaskCandidate.task_id == task_row.id))))
        else:
            log.warning("notification %s: recipients '%s' need a late task", rule.kind,
                        rule.to)
            return
        # the proposer is sent to the case; candidates to their task
        self.notifications.notify(step.session, people, rule.kind, instance=step.instance,
                                  task=task_row if rule.to == "candidates" else None,
                                  data=data if rule.to == "proposer" else None,
                                  actor=step.actor, title=rule.title,
                                  documents=step.documents)

    def _late_task(self, step: Step, timer, rule: policy.NotificationRule) -> None:
        """A boundary timer fired: tell whoever may do the task it is attached to (and,
        for ``assignee_head``, their heads, or the superior head when they are the head)."""
        session = step.session
        attached = [t for sibling in timer.parent.children if sibling is not timer
                    for t in sibling if t.task_spec.manual and t.has_state(TaskState.READY)]
        to_head = rule.to == "assignee_head"
        recipients: list[str] = []
        late_task: dict[str, tuple[HumanTask, bool]] = {}
        for late in attached:
            # what the step has pending (its instance row, audit entries) is not what this
            # reads: no flush of its own before the step's one
            with session.no_autoflush:
                row = session.get(HumanTask, str(late.id))
            if row is None:
                continue
            people = [row.assignee] if row.assignee else list(session.scalars(
                select(TaskCandidate.username).where(TaskCandidate.task_id == row.id)))
            if to_head:
                for person in people:
                    late_task.setdefault(person, (row, False))
                people = [h for p in people for h in self.org.heads_above(p, row.unit_id)]
            recipients += people
            for person in people:
                late_task[person] = (row, to_head)
        step.audit.append(audit.entry(
            step.instance.id, step.instance.definition_id, step.now, step.actor, rule.kind,
            element_id(timer), {"recipients": list(dict.fromkeys(recipients)),
                                "tasks": [element_id(t) for t in attached]}))
        for person, (row, head) in late_task.items():
            self.notifications.notify(session, [person], rule.kind, instance=step.instance,
                                      task=row, actor=step.actor, data={"to_head": head},
                                      title=rule.title)
