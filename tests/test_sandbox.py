"""The script sandbox: escapes fail safely, limits hold, and a failing script in a running
instance becomes an incident with a clear message instead of harming the server."""
from __future__ import annotations

import gc
import subprocess
import sys
import time

import pytest

from engine.errors import ScriptError
from engine.sandbox import Sandbox, SandboxViolation

from conftest import ALICE, BOB, PROJECT, bpmn_source, child_environment

ESCAPES = [
    "().__class__.__base__.__subclasses__()",
    "__import__('os').system('true')",
    "[].__class__",
    "(x for x in [1]).gi_frame.f_globals",
    "'{0.__class__}'.format(1)",
    "type(1)",
    "getattr(1, 'real')",
    "open('/etc/passwd')",
    "eval('1')",
    "exec('x = 1')",
    "compile('1', 'f', 'eval')",
    "globals()",
    "vars()",
    "datetime.now.__self__",
    "now.__globals__",
    "str.join",
]


@pytest.fixture
def sandbox():
    return Sandbox({"now": lambda: None}, time_limit=0.3)


@pytest.mark.parametrize("code", ESCAPES)
def test_escape_attempts_fail_safely(sandbox, code):
    with pytest.raises(ScriptError):
        sandbox.evaluate(code, {})


@pytest.mark.parametrize("script", [
    "import os",
    "from os import system",
    "def f():\n    pass",
    "f = lambda: 1",
    "class A:\n    pass",
    "try:\n    x = 1\nexcept:\n    pass",
    "global x",
    "x = (yield 1)",
])
def test_forbidden_statements_are_refused_before_running(sandbox, script):
    with pytest.raises(SandboxViolation):
        sandbox.execute(script, {})


def test_endless_loop_hits_the_cpu_limit(sandbox):
    with pytest.raises(ScriptError, match="CPU limit"):
        sandbox.execute("while True:\n    pass", {})


@pytest.mark.parametrize("script", [
    "x = 10 ** 10 ** 10",
    "x = 'a' * 10 ** 9",
    "x = [0] * 10 ** 9",
    "s = 'ab'\nfor i in range(40):\n    s += s",
    "x = 1 << 10 ** 7",
    "x = list(range(10 ** 9))",
    "x = 'a' * 2000\nx = x.replace('a', x)",
    "x = ''.join(['a' * 900000, 'b' * 900000])",
])
def test_memory_bombs_are_refused(sandbox, script):
    with pytest.raises(ScriptError, match="items|bits|numbers"):
        sandbox.execute(script, {})


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_the_memory_guard_reads_its_own_process_after_a_fork():
    # the guard keeps /proc/self/statm open per process: a forked worker reads its own
    # resident size, not its parent's through the inherited descriptor
    import os

    from engine.sandbox import _resident_bytes

    def fresh() -> int:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    if _resident_bytes() is None:
        pytest.skip("no /proc")
    before = _resident_bytes()
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:                                     # the child
        ok = False
        try:
            grown = b"\x01" * (128 * 2**20)              # written: resident
            mine, own = _resident_bytes(), fresh()
            # the child grew (the parent did not): what the guard reads is the child's
            ok = own > before + 32 * 2**20 and abs(mine - own) < 8 * 2**20 \
                and len(grown) > 0
        finally:
            os.write(writer, b"1" if ok else b"0")
            os._exit(0)
    os.close(writer)
    answer = os.read(reader, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert abs(_resident_bytes() - fresh()) < 8 * 2**20     # the parent reads its own


def test_ordinary_scripts_work(sandbox):
    data = {"votes": ["for", "against", "for"], "budget": 1_500_000}
    sandbox.execute("approved = votes.count('for') * 2 > len(votes)\n"
                    "per_month = budget // 12\nlabel = f'{budget:,} VND'.replace(',', '.')\n"
                    "summary = {'for': votes.count('for')}\nsummary['total'] = len(votes)",
                    data)
    assert data["approved"] is True and data["per_month"] == 125_000
    assert data["label"] == "1.500.000 VND" and data["summary"] == {"for": 2, "total": 3}
    assert sandbox.evaluate("per_month > 100000 and approved", data) is True


def test_an_expression_naming_a_variable_reads_it_as_the_code_would(sandbox):
    """A variable alone (a timer's or a due date's expression) gives the data's value itself;
    a keyword, a name the policy refuses, or one Python reads in another form, is not
    taken from the data."""
    due = {"at": "2026-11-29T23:59:00+07:00"}
    data = {"report_due": due, "len": 3, "True": "no", "_hidden": 1, "\ufb01le": "x"}
    assert sandbox.evaluate(" report_due ", data) is due
    assert sandbox.evaluate("len", data) == 3          # the data's name before a builtin
    assert sandbox.evaluate("True", data) is True
    with pytest.raises(SandboxViolation):
        sandbox.evaluate("_hidden", data)
    with pytest.raises(ScriptError):                   # read as "file", which is not there
        sandbox.evaluate("\ufb01le", data)
    with pytest.raises(ScriptError):
        sandbox.evaluate("missing", data)


def test_scripts_ask_whether_a_variable_exists(sandbox):
    """A called process tells whether its caller gave it a variable (``defined``) and reads
    it with a default (``value_of``), seeing the variables as they are when called."""
    data = {"outcome": "damaged"}
    sandbox.execute("on_record = defined('outcome')\nmissing = defined('claimed')\n"
                    "claimed = value_of('claimed', 'none')\nlater = 1\n"
                    "seen = value_of('later')\nhidden = defined('__builtins__')", data)
    assert (data["on_record"], data["missing"], data["claimed"]) == (True, False, "none")
    assert data["seen"] == 1 and data["hidden"] is False
    assert sandbox.evaluate("value_of('nothing') is None and defined('outcome')", data)


def test_endless_loop_in_bpmn_becomes_an_incident(engine):
    source = bpmn_source(replace={'result = "approved"': "while True:\n    pass"})
    engine.repository.deploy("national", [source], "designer")
    instance = engine.runtime.start("national", "review", principal=ALICE)
    [task] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(task.id, {}, principal=ALICE)
    [task] = engine.runtime.open_tasks(instance.id)
    engine.runtime.complete_task(task.id, {"decision": "approve"}, principal=BOB)
    failed = engine.runtime.get(instance.id)
    assert failed.status == "incident" and failed.incident_element == "record"
    assert "CPU limit" in failed.incident_message


def test_task_data_growing_past_the_cap_becomes_an_incident(engine):
    source = bpmn_source(replace={'result = "approved"': "blob = 'x' * 900000"})
    engine.repository.deploy("national", [source], "designer")
    instance = engine.runtime.start("national", "review", principal=ALICE)
    for data in ({"budget": 1, "months": 1}, {"decision": "approve"}):
        [task] = engine.runtime.open_tasks(instance.id)
        engine.runtime.complete_task(task.id, data, principal=ALICE)
    failed = engine.runtime.get(instance.id)
    assert failed.status == "incident" and "byte limit" in failed.incident_message


@pytest.mark.parametrize("script", [
    # one big list held many times: printing it would build 300 million items
    "a = [0] * 300000\nb = []\nfor i in range(1000):\n    b.append(a)\nx = str(b)",
    # the same through a dictionary of lists
    "a = list(range(300000))\nd = {}\nfor i in range(1000):\n    d[str(i)] = a\nx = str(d)",
    # and through a set, which is weighed like the other containers
    "a = set(range(300000))\nb = []\nfor i in range(1000):\n    b.append(a)\nx = str(b)",
])
def test_shared_reference_bombs_are_weighed_within_the_cpu_limit(sandbox, script):
    """Weighing a value before printing it must cost less than the script's CPU budget
    (0.3 s here), or the bomb would be reported as a slow script instead of by its size."""
    with pytest.raises(SandboxViolation, match="more than 1,000,000 items"):
        sandbox.execute(script, {})


def test_a_list_holding_itself_is_printed_as_python_prints_it(sandbox):
    data: dict = {}
    sandbox.execute("a = [1]\na.append(a)\nx = str(a)", data)
    assert data["x"] == "[1, [...]]"


# --- what a script's CPU limit counts: the script's work, not the process's ----------------

def test_a_full_collection_of_the_whole_process_does_not_count_against_a_script():
    """A full garbage collection walks every object the process holds, so its cost depends
    on what ran before, not on the script during which it happens to come: it is left out
    of the limit (the work the script asks for still counts)."""
    held = [[i] for i in range(800_000)]        # what a long-running process holds
    started = time.thread_time()
    gc.collect()
    full = time.thread_time() - started
    assert full > 0.02, "the heap is too small to show anything"

    def spin():
        until = time.thread_time() + full
        while time.thread_time() < until:
            pass

    sandbox = Sandbox({"collect": gc.collect, "spin": spin}, time_limit=full / 3)
    namespace = {}
    sandbox.execute("collect()\ndone = True", namespace)
    assert namespace["done"] is True
    with pytest.raises(ScriptError, match="CPU limit"):
        sandbox.execute("spin()\ndone = True", {})
    assert len(held) == 800_000


def test_a_cache_refilled_for_a_look_up_is_not_charged_to_the_script():
    """A look-up that finds the engine's cache stale (the organisation changed) refills it
    inside ``uncharged()``: the script is not charged for that, only for the look-up's own
    work; time counted once however the blocks nest."""
    from engine.sandbox import uncharged, uncharged_seconds
    limit = 0.05

    def spin(seconds):
        until = time.thread_time() + seconds
        while time.thread_time() < until:
            pass

    def refilled_look_up():
        with uncharged():
            spin(limit * 2)
            with uncharged():
                spin(limit * 2)
        return "found"

    sandbox = Sandbox({"look_up": refilled_look_up, "spin": lambda: spin(limit * 4)},
                      time_limit=limit)
    before = uncharged_seconds()
    namespace = {}
    sandbox.execute("a = look_up()\nb = look_up()", namespace)
    assert (namespace["a"], namespace["b"]) == ("found", "found")
    assert limit * 8 <= uncharged_seconds() - before < limit * 8 + 0.5
    with pytest.raises(ScriptError, match="CPU limit"):        # the look-up's own work
        sandbox.execute("spin()\ndone = True", {})


def test_the_first_script_counting_working_days_in_a_process_is_not_charged_for_loading(
        tmp_path):
    """The holiday tables are loaded when the engine is made, not inside the first script
    that counts working days (loading them takes about half a CPU second)."""
    program = f"""
from engine.clock import ManualClock
from engine.workflow_engine import WorkflowEngine

engine = WorkflowEngine("sqlite:///{tmp_path / 'db.sqlite3'}", clock=ManualClock(),
                        script_time_limit=0.1)
sandbox = engine.script_engine.environment.sandbox
print(sandbox.evaluate("add_working_days(now(), 3).isoformat()", {{}}))
"""
    done = subprocess.run([sys.executable, "-c", program], cwd=PROJECT, capture_output=True,
                          text=True, timeout=300, env=child_environment())
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "2026-01-08T17:00:00+07:00"


def test_an_expression_leaves_nothing_for_the_garbage_collector():
    """An evaluation's namespace (whose helpers ``defined`` and ``value_of`` close over it)
    is freed when it ends: every gateway, timer and due date of every step would otherwise
    leave a cycle for the collector's passes to find."""
    sandbox = Sandbox()
    expression = "defined('a') and value_of('a') + 1 == n + 1"
    sandbox.evaluate(expression, {"a": 0, "n": 0})      # compiled (and its garbage) first
    gc.collect()
    gc.disable()
    try:
        for n in range(50):
            assert sandbox.evaluate(expression, {"a": n, "n": n}) is True
        assert gc.collect() == 0
    finally:
        gc.enable()
