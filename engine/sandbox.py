"""The sandbox that runs BPMN scripts, conditions and timer expressions.

BPMN files come from process designers of many provinces and are untrusted. Plain
``eval``/``exec`` (what SpiffWorkflow does by default) lets any script reach the whole server,
so every piece of designer code goes through this module instead:

1. Compile time (RestrictedPython plus our own policy): no imports, no names or attributes
   starting with ``_``, no function/class/lambda definitions, no ``try`` (a script must not
   swallow the time limit), no ``global``/``nonlocal``, no generators' frame attributes.
2. Run time: attribute access only for an allow-list of methods on plain data types; item
   access and writes only on plain containers; ``+ * ** <<`` checked so no operation builds a
   value larger than ``MAX_SEQUENCE``/``MAX_INT_BITS``; only allow-listed functions exist.
3. A CPU-time budget per evaluation, enforced with a trace function on the script's frames;
   the same trace function stops a script that makes the process grow by more than
   ``MAX_MEMORY_GROWTH`` (values below the size guards, built in a loop).
4. Operations that run long in C, where the trace function cannot interrupt them (formatting
   with huge widths, printing or multiplying lists that hold one big list many times,
   ``sum`` of lists), are checked before they run.

What scripts may use is documented for designers in ``processes/README.md``.
"""
from __future__ import annotations

import ast
import gc
import keyword
import math
import operator
import os
import re
import sys
import threading
import time
import unicodedata
from datetime import date, datetime, timedelta
from decimal import Decimal
from contextlib import contextmanager
from itertools import compress, repeat
from functools import lru_cache
from typing import Any, Callable, Iterator, Mapping

from RestrictedPython import compile_restricted_eval, compile_restricted_exec
from RestrictedPython.transformer import RestrictingNodeTransformer

from .errors import ScriptError

SCRIPT_FILENAME = "<bpmn-script>"
MAX_SEQUENCE = 1_000_000          # longest str/list/tuple a script may build in one step
MAX_INT_BITS = 4096               # biggest integer a script may build with ** or <<
DEFAULT_TIME_LIMIT = 1.0          # CPU seconds per evaluation
MAX_MEMORY_GROWTH = 512 * 2**20   # bytes the process may grow by during one evaluation


class SandboxViolation(ScriptError):
    """The code tried something the sandbox forbids."""


class ScriptTimeout(BaseException):
    """Raised inside a script that used up its CPU budget.

    A BaseException so that nothing in designer code could catch it even if ``try`` were
    allowed; converted to a ScriptError at the sandbox boundary.
    """


class SandboxPolicy(RestrictingNodeTransformer):
    """RestrictedPython's policy, tightened for BPMN scripts, with guarded operators."""

    _FORBIDDEN = {
        ast.FunctionDef: "defining functions",
        ast.AsyncFunctionDef: "defining functions",
        ast.Lambda: "lambda expressions",
        ast.ClassDef: "defining classes",
        ast.Try: "try/except blocks",
        ast.Global: "global statements",
        ast.Nonlocal: "nonlocal statements",
        ast.Import: "imports",
        ast.ImportFrom: "imports",
        ast.Yield: "generators",
        ast.YieldFrom: "generators",
        ast.Await: "await",
        ast.With: "with blocks",
        ast.Raise: "raise statements",
    }
    _GUARDED_OPS = {ast.Add: "+", ast.Mult: "*", ast.Pow: "**", ast.LShift: "<<",
                    ast.Mod: "%"}

    def generic_visit(self, node):
        reason = self._FORBIDDEN.get(type(node))
        if reason:
            self.error(node, f"{reason} are not allowed in BPMN scripts")
            return node
        return super().generic_visit(node)

    # RestrictedPython has explicit visitors for these; route them through our check first.
    def visit_FunctionDef(self, node):
        return self.generic_visit(node)

    visit_AsyncFunctionDef = visit_Lambda = visit_ClassDef = visit_Try = visit_FunctionDef
    visit_Global = visit_Nonlocal = visit_Import = visit_ImportFrom = visit_FunctionDef
    visit_Yield = visit_YieldFrom = visit_Await = visit_With = visit_Raise = visit_FunctionDef
    visit_TryStar = visit_AsyncWith = visit_FunctionDef

    def visit_BinOp(self, node):
        node = self.node_contents_visit(node)
        symbol = self._GUARDED_OPS.get(type(node.op))
        if symbol is None:
            return node
        call = ast.Call(func=ast.Name("_binop_", ast.Load()),
                        args=[ast.Constant(symbol), node.left, node.right], keywords=[])
        return ast.fix_missing_locations(ast.copy_location(call, node))

    # f-strings format in C, out of reach of the CPU budget: f'{1:>999999999}' would build a
    # gigabyte in one step. Each part goes through _format_, the whole through _fstring_.
    def visit_JoinedStr(self, node):
        parts = []
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                spec = self.visit(value.format_spec) if value.format_spec else ast.Constant("")
                value = ast.Call(func=ast.Name("_format_", ast.Load()),
                                 args=[self.visit(value.value), ast.Constant(value.conversion),
                                       spec], keywords=[])
            parts.append(value)
        call = ast.Call(func=ast.Name("_fstring_", ast.Load()), args=parts, keywords=[])
        return ast.fix_missing_locations(ast.copy_location(call, node))


# --- run-time guards ---------------------------------------------------------------

def _too_big() -> SandboxViolation:
    return SandboxViolation(f"a value of more than {MAX_SEQUENCE:,} items would be built")


_TEXTS = (str, bytes)
_CONTAINERS = (list, tuple, dict, set, frozenset)


def _weight(value, budget: int = MAX_SEQUENCE, _known: dict | None = None) -> int:
    """Items reachable from ``value``, counting a shared container each time it is reached
    (what printing, comparing or storing it costs); stops counting past ``budget``.

    Fast enough to run inside a script's CPU budget: texts and containers among the items
    are picked out by C-level iteration (map and compress), not a Python loop over every
    item, and a container reached again counts its weight without being walked again (a
    list of 100,000 numbers referenced a hundred times is refused in milliseconds)."""
    if isinstance(value, _TEXTS):
        return len(value)
    if not isinstance(value, _CONTAINERS):
        return 1
    known = {} if _known is None else _known
    if id(value) in known:
        return known[id(value)]
    total = len(value)
    known[id(value)] = total            # reached again inside itself: printed as [...]
    for part in ((value.keys(), value.values()) if isinstance(value, dict) else (value,)):
        total += sum(map(len, compress(part, map(isinstance, part, repeat(_TEXTS)))))
        for item in compress(part, map(isinstance, part, repeat(_CONTAINERS))):
            if total > budget:
                return total            # over the budget: the caller stops counting too
            total += _weight(item, budget - total, known)
    known[id(value)] = total
    return total


def _check_weight(*values) -> None:
    total = 0
    for value in values:
        total += _weight(value, MAX_SEQUENCE - total)
        if total > MAX_SEQUENCE:
            raise _too_big()


def _check_size(value):
    if isinstance(value, (str, bytes, list, tuple)) and len(value) > MAX_SEQUENCE:
        raise _too_big()
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise SandboxViolation(f"an integer larger than {MAX_INT_BITS} bits would be built")
    return value


def _length(value) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else 0


def guarded_binop(symbol: str, left, right):
    if symbol == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, (str, bytes, list, tuple)) and isinstance(times, int):
                # [big_list] * n is n references, but printing or storing it costs n × big
                if _weight(seq) * max(times, 0) > MAX_SEQUENCE:
                    raise _too_big()
        return _check_size(left * right)
    if symbol == "+":
        if _length(left) + _length(right) > MAX_SEQUENCE:
            raise _too_big()
        return left + right
    if symbol == "%":
        if isinstance(left, (str, bytes)):
            return _percent_format(left, right)
        return left % right
    if symbol == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if right * math.log2(abs(left)) > MAX_INT_BITS:
                raise SandboxViolation(f"an integer larger than {MAX_INT_BITS} bits would be built")
        return _check_size(left ** right)
    if symbol == "<<":
        if isinstance(left, int) and isinstance(right, int) \
                and left.bit_length() + right > MAX_INT_BITS:
            raise SandboxViolation(f"an integer larger than {MAX_INT_BITS} bits would be built")
        return left << right
    raise SandboxViolation(f"operator {symbol} is not allowed")


_FORMAT_NUMBERS = re.compile(r"\d+")


def _check_format_spec(spec: str) -> None:
    if any(int(n) > MAX_SEQUENCE for n in _FORMAT_NUMBERS.findall(spec)):
        raise SandboxViolation(f"a width or precision over {MAX_SEQUENCE:,} in {spec[:40]!r}")


def _percent_format(template, args):
    # '%999999999d' % 1 builds a gigabyte in C, in one step the CPU budget cannot interrupt
    for directive in re.findall(r"%[^a-zA-Z%]*", str(template)):
        _check_format_spec(directive)
    _check_weight(template, args)
    return _check_size(template % args)


_CONVERSIONS = {-1: None, ord("s"): str, ord("r"): repr, ord("a"): ascii}


def guarded_format(value, conversion: int, spec: str) -> str:
    _check_format_spec(spec)
    _check_weight(value)
    convert = _CONVERSIONS.get(conversion)
    if convert is not None:
        value = convert(value)
    return _check_size(format(value, spec))


def guarded_fstring(*parts: str) -> str:
    if sum(len(p) for p in parts) > MAX_SEQUENCE:
        raise _too_big()
    return "".join(parts)


_INPLACE = {"+=": "+", "*=": "*", "**=": "**", "<<=": "<<", "%=": "%"}
_PLAIN_INPLACE = {
    "-=": operator.sub, "/=": operator.truediv, "//=": operator.floordiv,
    ">>=": operator.rshift, "&=": operator.and_, "|=": operator.or_, "^=": operator.xor,
}


def guarded_inplace(op: str, left, right):
    if op in _INPLACE:
        return guarded_binop(_INPLACE[op], left, right)
    if op in _PLAIN_INPLACE:
        return _PLAIN_INPLACE[op](left, right)
    raise SandboxViolation(f"operator {op} is not allowed")


def _safe_replace(text: str):
    def replace(old, new, count=-1):
        hits = text.count(old) if count < 0 else min(count, text.count(old))
        if len(text) + hits * (len(new) - len(old)) > MAX_SEQUENCE:
            raise SandboxViolation(f"a value of more than {MAX_SEQUENCE:,} items would be built")
        return text.replace(old, new, count)
    return replace


def _safe_join(sep: str):
    def join(items):
        items = list(items)
        if sum(_length(i) for i in items) + len(sep) * len(items) > MAX_SEQUENCE:
            raise SandboxViolation(f"a value of more than {MAX_SEQUENCE:,} items would be built")
        return sep.join(items)
    return join


def _safe_pad(text: str, name: str):
    method = getattr(text, name)

    def pad(width, *args):
        if width > MAX_SEQUENCE:
            raise SandboxViolation(f"a value of more than {MAX_SEQUENCE:,} items would be built")
        return method(width, *args)
    return pad


def _safe_extend(items: list):
    def extend(more):
        more = list(more)
        if len(items) + len(more) > MAX_SEQUENCE:
            raise _too_big()
        items.extend(more)
    return extend


_STR_METHODS = {
    "lower", "upper", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "title",
    "capitalize", "casefold", "startswith", "endswith", "find", "rfind", "index", "rindex",
    "count", "isdigit", "isalpha", "isalnum", "isspace", "isnumeric", "isdecimal", "islower",
    "isupper", "partition", "rpartition", "removeprefix", "removesuffix", "swapcase",
}
_STR_WRAPPED: dict[str, Callable[[str], Callable]] = {
    "replace": _safe_replace,
    "join": _safe_join,
    "zfill": lambda s: _safe_pad(s, "zfill"),
    "ljust": lambda s: _safe_pad(s, "ljust"),
    "rjust": lambda s: _safe_pad(s, "rjust"),
    "center": lambda s: _safe_pad(s, "center"),
}
_SAFE_ATTRIBUTES: dict[type, frozenset[str]] = {
    list: frozenset({"append", "insert", "pop", "remove", "index", "count", "sort",
                     "reverse", "copy", "clear"}),
    dict: frozenset({"get", "keys", "values", "items", "pop", "setdefault", "update", "copy",
                     "clear"}),
    set: frozenset({"add", "discard", "remove", "union", "intersection", "difference",
                    "issubset", "issuperset", "copy", "clear"}),
    frozenset: frozenset({"union", "intersection", "difference", "issubset", "issuperset"}),
    tuple: frozenset({"index", "count"}),
    int: frozenset({"real", "imag", "numerator", "denominator"}),
    float: frozenset({"real", "imag", "is_integer"}),
    Decimal: frozenset({"quantize", "is_zero"}),
    date: frozenset({"year", "month", "day", "weekday", "isoweekday", "isoformat", "toordinal"}),
    datetime: frozenset({"year", "month", "day", "hour", "minute", "second", "microsecond",
                         "weekday", "isoweekday", "isoformat", "date", "time", "tzinfo",
                         "toordinal", "timestamp"}),
    timedelta: frozenset({"days", "seconds", "microseconds", "total_seconds"}),
}


def guarded_getattr(obj, name, *default):
    if not isinstance(name, str) or name.startswith("_"):
        raise SandboxViolation(f"attribute {name!r} is not accessible in BPMN scripts")
    kind = type(obj)
    if kind is str:
        if name in _STR_METHODS:
            return getattr(obj, name)
        if name in _STR_WRAPPED:
            return _STR_WRAPPED[name](obj)
    elif kind is list and name == "extend":
        return _safe_extend(obj)
    elif name in _SAFE_ATTRIBUTES.get(kind, ()):
        return getattr(obj, name)
    raise SandboxViolation(
        f"attribute {name!r} of a {kind.__name__} value is not accessible in BPMN scripts")


_INDEXABLE = (dict, list, tuple, str, bytes)


def guarded_getitem(obj, key):
    if not isinstance(obj, _INDEXABLE):
        raise SandboxViolation(f"a {type(obj).__name__} value cannot be indexed in BPMN scripts")
    return obj[key]


def guarded_write(obj):
    if isinstance(obj, (dict, list)):
        return obj
    raise SandboxViolation(f"a {type(obj).__name__} value cannot be modified in BPMN scripts")


def guarded_iter(obj):
    return iter(obj)


def _capped_range(*args):
    result = range(*args)
    if len(result) > MAX_SEQUENCE:
        raise SandboxViolation(f"range of more than {MAX_SEQUENCE:,} numbers")
    return result


def _safe_str(value=""):
    """``str``: printing a list that holds one big list many times would build gigabytes."""
    _check_weight(value)
    return _check_size(str(value))


def _safe_isinstance(value, kinds):
    # scripts see the guarded str, which is a function: isinstance(x, str) must still work
    if isinstance(kinds, tuple):
        kinds = tuple(str if k is _safe_str else k for k in kinds)
    elif kinds is _safe_str:
        kinds = str
    return isinstance(value, kinds)


def _safe_sum(values, start=0):
    # sum(lists, []) concatenates quadratically in C, out of reach of the CPU budget
    if not isinstance(start, (int, float, Decimal, timedelta)):
        raise SandboxViolation("sum() adds numbers only")
    return sum(values, start)


def _iter_unpack_sequence(it, spec, getiter):
    for item in getiter(it):
        yield item


def _unpack_sequence(it, spec, getiter):
    return list(getiter(it))


SAFE_BUILTINS: dict[str, Any] = {
    "None": None, "True": True, "False": False,
    "abs": abs, "all": all, "any": any, "bool": bool, "dict": dict, "divmod": divmod,
    "enumerate": enumerate, "float": float, "int": int, "len": len, "list": list, "max": max,
    "min": min, "range": _capped_range, "reversed": reversed, "round": round, "set": set,
    "sorted": sorted, "str": _safe_str, "sum": _safe_sum, "tuple": tuple, "zip": zip,
    "isinstance": _safe_isinstance,
    "Decimal": Decimal, "date": date, "datetime": datetime, "timedelta": timedelta,
}

_GUARDS: dict[str, Any] = {
    "_getattr_": guarded_getattr,
    "_getitem_": guarded_getitem,
    "_getiter_": guarded_iter,
    "_write_": guarded_write,
    "_binop_": guarded_binop,
    "_format_": guarded_format,
    "_fstring_": guarded_fstring,
    "_inplacevar_": guarded_inplace,
    "_iter_unpack_sequence_": _iter_unpack_sequence,
    "_unpack_sequence_": _unpack_sequence,
}


@lru_cache(maxsize=4096)
def compile_code(source: str, mode: str):
    """Compile designer code under the sandbox policy; raises SandboxViolation with the reason."""
    if not isinstance(source, str):
        raise SandboxViolation("the script is not text")
    if len(source) > 100_000:
        raise SandboxViolation("the script is longer than 100,000 characters")
    compiler = compile_restricted_eval if mode == "eval" else compile_restricted_exec
    try:
        result = compiler(source, filename=SCRIPT_FILENAME, policy=SandboxPolicy)
    except (RecursionError, MemoryError):
        raise SandboxViolation("the code is nested too deeply") from None
    if result.errors:
        raise SandboxViolation("; ".join(result.errors))
    return result.code


@lru_cache(maxsize=4096)
def _is_variable(source: str) -> bool:
    """Whether ``source``, as an expression, is a name only, read as it is written (an
    identifier, not a keyword, in the normal form Python reads names in)."""
    return (source.isidentifier() and not keyword.iskeyword(source)
            and unicodedata.normalize("NFKC", source) == source)


def check_code(source: str, mode: str) -> None:
    """Raise SandboxViolation if ``source`` would be refused at run time by the compiler."""
    compile_code(source, mode)


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


_STATM: dict[int, int] = {}        # this process's id → its /proc/self/statm, kept open
_STATM_LOCK = threading.Lock()


def _resident_bytes() -> int | None:
    # read at every expression and every few trace events of a script: a descriptor kept
    # open per process (a forked worker opens its own) and read from its start, 2 µs
    # instead of 13 µs for an open and close each time
    try:
        pid = os.getpid()
        fd = _STATM.get(pid)
        if fd is None:
            with _STATM_LOCK:
                fd = _STATM.get(pid)
                if fd is None:
                    fd = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
                    for inherited in _STATM.values():   # a parent's, through fork
                        os.close(inherited)
                    _STATM.clear()
                    _STATM[pid] = fd
        return int(os.pread(fd, 128, 0).split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None     # no /proc: the CPU budget and size guards still apply


class ScriptMemoryExceeded(BaseException):
    """Raised inside a script that made the process grow by more than its allowance."""


class _FullCollections:
    """CPU time each thread spent in the garbage collector's full (oldest-generation)
    collections. Such a collection walks every object of the process, so it costs what the
    process holds (cached specs, other engines' state), not what the script running when it
    comes did: a script's CPU limit leaves it out. Younger collections, which follow the
    script's own allocations, still count."""

    def __init__(self):
        self.local = threading.local()

    def seconds(self) -> float:
        return getattr(self.local, "total", 0.0)

    def __call__(self, phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self.local.started = time.thread_time()
        elif phase == "stop" and getattr(self.local, "started", None) is not None:
            self.local.total = self.seconds() + time.thread_time() - self.local.started
            self.local.started = None


_FULL_COLLECTIONS = _FullCollections()
gc.callbacks.append(_FULL_COLLECTIONS)

_REFILLS = threading.local()


@contextmanager
def uncharged() -> Iterator[None]:
    """CPU time a thread spends inside is not charged to the script running on it: the
    engine refilling a cache a script's look-up found stale (the organisation's tree after
    it changed: a country's 50,000 units take about 2 CPU seconds to read, past a script's
    whole limit) is the process catching up, as a full collection is, not work the script
    asked for; what the look-up then does still counts. (Full collections inside are left
    out here: the budget leaves them out already.)"""
    before, collected = uncharged_seconds(), _FULL_COLLECTIONS.seconds()
    started = time.thread_time()
    try:
        yield
    finally:
        # a block inside counted its own time already: set, not added, so it counts once
        _REFILLS.total = before + (time.thread_time() - started) - (
            _FULL_COLLECTIONS.seconds() - collected)


def uncharged_seconds() -> float:
    """CPU seconds this thread spent in :func:`uncharged` blocks so far."""
    return getattr(_REFILLS, "total", 0.0)


def _not_charged() -> float:
    """CPU seconds of this thread no script is charged for: full collections and
    :func:`uncharged` blocks."""
    return _FULL_COLLECTIONS.seconds() + uncharged_seconds()


class _CpuBudget:
    """Trace function that raises ScriptTimeout once the thread used up its CPU budget (less
    the full garbage collections, see :class:`_FullCollections`, and the caches refilled
    in :func:`uncharged` blocks), and ScriptMemoryExceeded
    once the process grew by more than ``MAX_MEMORY_GROWTH``: within one CPU second a loop
    can allocate gigabytes of values each below the size guards."""

    MEMORY_CHECK_EVERY = 16     # trace events between reads of /proc/self/statm

    def __init__(self, seconds: float):
        self.deadline = time.thread_time() + seconds
        self.collected = _not_charged()
        self.seconds = seconds
        self.events = 0
        start = _resident_bytes()
        self.memory_ceiling = None if start is None else start + MAX_MEMORY_GROWTH

    def global_trace(self, frame, event, arg):
        if frame.f_code.co_filename == SCRIPT_FILENAME:
            return self.local_trace
        return None

    def local_trace(self, frame, event, arg):
        if time.thread_time() > self.deadline and \
                time.thread_time() - (_not_charged() - self.collected) \
                > self.deadline:
            raise ScriptTimeout(self.seconds)
        self.events += 1
        if self.memory_ceiling is not None and self.events % self.MEMORY_CHECK_EVERY == 0:
            resident = _resident_bytes()
            if resident is not None and resident > self.memory_ceiling:
                raise ScriptMemoryExceeded()
        return self.local_trace


class Sandbox:
    """Evaluates expressions and executes scripts against task data."""

    def __init__(self, functions: Mapping[str, Callable] | None = None,
                 time_limit: float = DEFAULT_TIME_LIMIT):
        self.time_limit = time_limit
        self.builtins = {**SAFE_BUILTINS, **(functions or {}), **_GUARDS}

    def _run(self, code, namespace: dict):
        budget = _CpuBudget(self.time_limit)
        previous = sys.gettrace()
        sys.settrace(budget.global_trace)
        try:
            return eval(code, namespace)  # noqa: S307 - compiled by the restricting policy
        except ScriptTimeout:
            raise ScriptError(f"the script ran longer than its {self.time_limit:g} s CPU limit"
                              ) from None
        except ScriptMemoryExceeded:
            raise ScriptError(f"the script used more than {MAX_MEMORY_GROWTH // 2**20} MB of "
                              "memory") from None
        except SandboxViolation:
            raise
        except RecursionError:
            raise ScriptError("the script nested too deeply") from None
        except MemoryError:
            raise ScriptError("the script ran out of memory") from None
        except Exception as exc:  # designer code failed: report the kind and message
            raise ScriptError(f"{type(exc).__name__}: {exc}") from None
        finally:
            sys.settrace(previous)

    def _namespace(self, data: Mapping[str, Any]) -> dict:
        """``data`` as a script's variables, with ``defined(name)`` (the data has a variable
        ``name``) and ``value_of(name, default=None)`` (its value, else ``default``), which
        read the variables as they are when called."""
        namespace = dict(data)

        def defined(name) -> bool:
            return isinstance(name, str) and name != "__builtins__" and name in namespace

        def value_of(name, default=None):
            return namespace[name] if defined(name) else default

        namespace["__builtins__"] = {**self.builtins, "defined": defined, "value_of": value_of}
        return namespace

    def evaluate(self, expression: str, data: Mapping[str, Any]):
        source = expression.strip()
        code = compile_code(source, "eval")
        if source in data and _is_variable(source):
            # a variable of the data (a timer's or a due date's expression, at every unit
            # of a reporting cycle): its value, which the code would read, without a run
            return data[source]
        namespace = self._namespace(data)
        try:
            return self._run(code, namespace)
        finally:
            # ``defined`` and ``value_of`` close over the namespace that holds them: without
            # them it is freed at once, not left for the collector's passes to find
            namespace.pop("__builtins__", None)

    def execute(self, script: str, data: dict) -> None:
        """Run ``script`` with ``data`` as its variables; ``data`` is updated in place."""
        code = compile_code(script, "exec")
        namespace = self._namespace(data)
        self._run(code, namespace)
        namespace.pop("__builtins__", None)
        data.clear()
        data.update(namespace)

