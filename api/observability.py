"""Health, readiness, Prometheus metrics and JSON request logs with a request id."""
from __future__ import annotations

import logging
import time
import uuid

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from engine.logs import close_scope, configure_logging, open_scope
from engine.store import HumanTask, Instance, InstanceStatus, TaskStatus, Timer, TimerStatus
from engine.store.migrate import is_current

from .problems import problem

log = logging.getLogger("nd73.requests")


def _signed_in_user() -> str | None:
    """Asked at each log line: the caller is known only once authentication has run."""
    principal = g.get("principal")
    return principal.username if principal else None


class EngineCollector:
    """Figures read from the database at scrape time, so every replica reports the same."""

    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        now = self.engine.clock.now()
        with self.engine.db.reading() as session:
            by_status = session.execute(select(Instance.status, func.count())
                                        .group_by(Instance.status)).all()
            open_tasks = session.scalar(select(func.count(HumanTask.id))
                                        .where(HumanTask.status == TaskStatus.OPEN))
            overdue = session.scalar(select(func.count(HumanTask.id)).where(
                HumanTask.status == TaskStatus.OPEN, HumanTask.due_at < now))
            oldest_due = session.scalar(select(func.min(Timer.due_at)).where(
                Timer.status == TimerStatus.PENDING, Timer.due_at <= now))
            failed_timers = session.scalar(select(func.count(Timer.id))
                                           .where(Timer.status == TimerStatus.FAILED))
        instances = GaugeMetricFamily("nd73_instances", "Process instances by status",
                                      labels=["status"])
        for status, count in by_status:
            instances.add_metric([status], count)
        yield instances
        yield GaugeMetricFamily("nd73_incidents", "Instances in incident",
                                value=dict(by_status).get(InstanceStatus.INCIDENT, 0))
        yield GaugeMetricFamily("nd73_tasks_open", "Open human tasks", value=open_tasks)
        yield GaugeMetricFamily("nd73_tasks_overdue", "Open tasks past their due time",
                                value=overdue)
        lag = 0.0
        if oldest_due is not None:
            oldest_due = oldest_due if oldest_due.tzinfo else oldest_due.replace(
                tzinfo=now.tzinfo)
            lag = max(0.0, (now - oldest_due).total_seconds())
        yield GaugeMetricFamily("nd73_timer_lag_seconds",
                                "How late the oldest due, unfired timer is", value=lag)
        yield GaugeMetricFamily("nd73_timers_failed", "Timers that gave up", value=failed_timers)


def register(app: Flask, engine) -> None:
    configure_logging()
    registry = CollectorRegistry()
    requests_total = Counter("nd73_http_requests", "HTTP requests",
                             ["method", "endpoint", "status"], registry=registry)
    latency = Histogram("nd73_http_request_seconds", "HTTP request latency",
                        ["method", "endpoint"], registry=registry)
    registry.register(EngineCollector(engine))

    def start_request():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() \
            else uuid.uuid4().hex
        g.started = time.perf_counter()
        g.log_scope = open_scope(request_id=g.request_id, user=_signed_in_user,
                                 instance_id=(request.view_args or {}).get("instance_id"))

    # first of all, so a request refused by an earlier check (401, 403) has its id too
    app.before_request_funcs.setdefault(None, []).insert(0, start_request)

    @app.teardown_request
    def end_request(_exc):
        token = g.pop("log_scope", None)
        if token is not None:
            close_scope(token)

    @app.after_request
    def finish_request(response):
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        endpoint = request.url_rule.rule if request.url_rule else "(unmatched)"
        requests_total.labels(request.method, endpoint, str(response.status_code)).inc()
        latency.labels(request.method, endpoint).observe(elapsed)
        response.headers["X-Request-ID"] = g.get("request_id", "")
        log.info("request", extra={"fields": {
            "method": request.method, "path": request.path, "status": response.status_code,
            "duration_ms": round(elapsed * 1000, 1)}})
        return response

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        try:
            current = is_current(engine.db)      # connects and reads the schema's revision
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return problem("server-unavailable", f"database unreachable: {type(exc).__name__}")
        if not current:
            return problem("server-unavailable", "database schema is not at the newest "
                                                 "migration: run nd73 db upgrade")
        return jsonify(status="ready")

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")
