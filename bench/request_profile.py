"""Where a REST completion's time goes outside the step: the request is timed through the
app in this process (Flask's test client, the same request handling as under gunicorn) with
the step, authentication, the body's and the answer's (de)serialization, the JSON codec,
the session, the request hooks and the rest (Flask and Werkzeug: routing, the request and
response objects) timed apart, in CPU time of the request's thread and in wall time.

Each part is a wrapper put around the function that does it for the duration of the
measure (a call through the wrapper costs about a microsecond)."""
from __future__ import annotations

import functools
import time
from contextlib import ExitStack, contextmanager
from typing import Iterator


class Parts:
    """CPU and wall time spent in named functions, summed over calls (a part called inside
    another is counted in both, and reported as nested under it)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def timed(self, name: str, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            cpu, wall = time.thread_time(), time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.cpu[name] = self.cpu.get(name, 0.0) + time.thread_time() - cpu
                self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
                self.calls[name] = self.calls.get(name, 0) + 1
        return wrapper


def _wrap(stack: ExitStack, parts: Parts, name: str, owner, attribute: str) -> None:
    original = getattr(owner, attribute)
    setattr(owner, attribute, parts.timed(name, original))
    if isinstance(owner, type) and attribute not in owner.__dict__:
        stack.callback(delattr, owner, attribute)
    else:
        stack.callback(setattr, owner, attribute, original)


def _wrap_list(stack: ExitStack, parts: Parts, prefix: str, functions: list) -> None:
    originals = list(functions)
    functions[:] = [parts.timed(f"{prefix}:{getattr(f, '__name__', '?')}", f)
                    for f in functions]
    stack.callback(functions.__setitem__, slice(None), originals)


@contextmanager
def profiled(app) -> Iterator[Parts]:
    """``app``'s request handling with its parts timed (restored afterwards)."""
    import marshmallow

    from api import auth
    from api.routes import tasks as task_routes

    engine = app.extensions["nd73"]
    parts = Parts()
    with ExitStack() as stack:
        _wrap(stack, parts, "request", app, "wsgi_app")
        _wrap(stack, parts, "step", engine.runtime, "complete_task")
        _wrap(stack, parts, "auth", auth, "_principal_from_request")
        _wrap(stack, parts, "auth.principal_query", engine.access, "principal")
        _wrap(stack, parts, "auth.token_signature", auth, "_serializer")
        _wrap(stack, parts, "schemas.load", marshmallow.Schema, "load")
        _wrap(stack, parts, "schemas.dump", marshmallow.Schema, "dump")
        _wrap(stack, parts, "answer.instance_dict", task_routes, "instance_dict")
        _wrap(stack, parts, "json.loads", app.json, "loads")
        _wrap(stack, parts, "json.dumps", app.json, "dumps")
        _wrap(stack, parts, "session.open", app.session_interface, "open_session")
        _wrap(stack, parts, "session.save", app.session_interface, "save_session")
        for key, functions in app.before_request_funcs.items():
            _wrap_list(stack, parts, f"before_request{'.' + key if key else ''}", functions)
        for key, functions in app.after_request_funcs.items():
            _wrap_list(stack, parts, f"after_request{'.' + key if key else ''}", functions)
        for key, functions in app.teardown_request_funcs.items():
            _wrap_list(stack, parts, f"teardown{'.' + key if key else ''}", functions)
        yield parts


# parts called inside another timed part: shown, not added again
NESTED = ("auth", "auth.principal_query", "auth.token_signature")


def breakdown(parts: Parts, requests: int) -> dict:
    """Per request, in milliseconds of the request thread's CPU: each part, the whole
    request, the step, and what is left outside every part (Flask and Werkzeug: routing,
    the request and response objects, flask-smorest's wrappers)."""
    def ms(value: float) -> float:
        return round(value * 1000 / max(requests, 1), 3)
    request_cpu = parts.cpu.get("request", 0.0)
    step_cpu = parts.cpu.get("step", 0.0)
    counted = sum(value for name, value in parts.cpu.items()
                  if name not in NESTED and name != "request")
    return {
        "requests": requests,
        "request_cpu_ms": ms(request_cpu), "request_wall_ms": ms(parts.wall.get("request", 0)),
        "step_cpu_ms": ms(step_cpu), "step_wall_ms": ms(parts.wall.get("step", 0)),
        "outside_step_cpu_ms": ms(request_cpu - step_cpu),
        "parts_cpu_ms": {name: ms(value) for name, value in sorted(
            parts.cpu.items(), key=lambda item: -item[1]) if name not in ("request", "step")},
        "flask_werkzeug_rest_cpu_ms": ms(request_cpu - counted),
    }
