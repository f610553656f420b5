"""The lock files say what pyproject.toml asks for: every dependency, at a version its
specifier allows, every line hash-checked; and the install steps use them."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import PROJECT

PYPROJECT = tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))
RUNTIME = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
TEST = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]]
FROM_PYPROJECT = "nd73-workflow (pyproject.toml)"
STALE = "run `make lock` after changing the dependencies in pyproject.toml"


@dataclass
class Locked:
    requirement: Requirement
    hashes: list[str]
    via: list[str]              # what asked for it, as the lock's comments say

    @property
    def version(self) -> str:
        [specifier] = self.requirement.specifier
        return specifier.version


def read_lock(name: str) -> dict[str, Locked]:
    """A pip requirements file as uv writes it: ``name==version ; marker \\`` then its
    ``--hash`` lines, then ``# via`` comments naming what needs it."""
    locked: dict[str, Locked] = {}
    current: Locked | None = None
    for line in (PROJECT / name).read_text(encoding="utf-8").splitlines():
        text = line.strip().rstrip("\\").strip()
        if not text:
            continue
        if text.startswith("#"):
            via = text.lstrip("#").strip()
            if current is not None and via and via != "via":
                current.via.append(via.removeprefix("via ").strip())
            continue
        if text.startswith("--hash="):
            assert current is not None, f"{name}: a hash before any requirement"
            current.hashes.append(text.removeprefix("--hash="))
            continue
        assert not text.startswith("-"), f"{name}: unexpected option {text!r}"
        current = Locked(Requirement(text), [], [])
        key = canonicalize_name(current.requirement.name)
        assert key not in locked, f"{name}: {key} is locked twice"
        locked[key] = current
    return locked


@pytest.mark.parametrize("name", ["requirements.lock", "requirements-test.lock"])
def test_every_locked_package_has_one_version_and_its_hashes(name):
    locked = read_lock(name)
    assert len(locked) > 20
    for key, entry in locked.items():
        [specifier] = entry.requirement.specifier
        assert specifier.operator == "==", f"{name}: {key} is not pinned: {entry.requirement}"
        assert entry.hashes, f"{name}: {key} has no --hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in entry.hashes), key


@pytest.mark.parametrize("name, wanted", [("requirements.lock", RUNTIME),
                                          ("requirements-test.lock", RUNTIME + TEST)])
def test_the_lock_holds_what_pyproject_asks_for(name, wanted):
    locked = read_lock(name)
    for requirement in wanted:
        key = canonicalize_name(requirement.name)
        assert key in locked, f"{name} lacks {requirement}: {STALE}"
        version = locked[key].version
        assert requirement.specifier.contains(version, prereleases=True), \
            f"{name} has {key}=={version}, pyproject.toml asks for {requirement}: {STALE}"
    # and nothing pyproject.toml no longer asks for
    direct = {key for key, entry in locked.items() if FROM_PYPROJECT in entry.via}
    assert direct == {canonicalize_name(r.name) for r in wanted}, STALE


def test_the_image_installs_the_versions_ci_tests():
    runtime, test = read_lock("requirements.lock"), read_lock("requirements-test.lock")
    for key, entry in runtime.items():
        assert key in test, f"{key} is in requirements.lock only: {STALE}"
        assert (test[key].version, sorted(test[key].hashes)) == \
            (entry.version, sorted(entry.hashes)), f"{key} differs between the locks: {STALE}"


def test_make_installs_from_the_lock_and_reinstalls_when_it_changes():
    makefile = (PROJECT / "Makefile").read_text(encoding="utf-8")
    rule = re.search(r"^\$\(STAMP\):(.*)\n((?:\t.*\n)+)", makefile, re.M)
    assert rule, "the install rule $(STAMP) is missing"
    prerequisites, recipe = rule.group(1), rule.group(2)
    assert "pyproject.toml" in prerequisites and "$(LOCKS)" in prerequisites
    assert re.search(r"^LOCKS\s*:?=\s*requirements\.lock requirements-test\.lock$", makefile,
                     re.M)
    assert "pip install --quiet --require-hashes -r requirements-test.lock" in recipe
    assert "pip install --quiet --no-deps -e ." in recipe
    assert re.search(r"^lock:", makefile, re.M) and re.search(r"^lint:", makefile, re.M)


def test_make_lint_checks_the_engine_the_api_the_benchmarks_and_the_tests():
    """`make lint` runs ruff over every package of Python the product ships, measures or
    tests itself with, and ruff finds nothing in the benchmarks and the tests."""
    makefile = (PROJECT / "Makefile").read_text(encoding="utf-8")
    rule = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert rule, "the lint rule is missing"
    [ruff] = [line.split() for line in rule.group(1).splitlines() if "ruff check" in line]
    assert {"engine", "api", "bench", "tests"} <= set(ruff[ruff.index("check") + 1:])
    ruff_bin = Path(sys.executable).with_name("ruff")
    checked = subprocess.run([str(ruff_bin), "check", "bench", "tests"], cwd=PROJECT,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
