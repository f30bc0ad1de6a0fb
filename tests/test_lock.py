"""requirements.lock: exact pins, consistent with pyproject.toml and with the installed venv."""

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.!+_-]+)$")
REFRESH = "run `make lock` (after changing pyproject.toml) or `make install` (stale .venv)"


def _lock() -> dict[str, tuple[str, str]]:
    """canonical name -> (name as written, version); asserts the lock's format on the way."""
    pins: dict[str, tuple[str, str]] = {}
    for n, line in enumerate(LOCK.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"requirements.lock:{n}: {line!r} is not an exact `name==version` pin"
        name, version = match.groups()
        Version(version)  # a valid PEP 440 version
        key = canonicalize_name(name)
        assert key not in pins, f"requirements.lock:{n}: {name} is listed twice"
        pins[key] = (name, version)
    return pins


def _dependencies() -> list[Requirement]:
    """pyproject's dependencies and those of its optional extras (`make lock` locks them all)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [d for deps in project.get("optional-dependencies", {}).values() for d in deps]
    return [Requirement(d) for d in project["dependencies"] + extras]


def test_lock_pins_every_package_exactly_and_once():
    pins = _lock()
    assert len(pins) > 50, "requirements.lock looks truncated"
    assert "msl" not in pins, "requirements.lock must not list msl itself"
    assert "pip" not in pins, "pip is pinned in the Makefile, not in the lock"
    name, version = pins["torch"]
    assert "+" not in version, "torch must be locked without a local label (+cpu), for GPU machines"


def test_lock_satisfies_pyproject():
    pins = _lock()
    for req in _dependencies():
        if req.marker is not None and not req.marker.evaluate():
            continue
        key = canonicalize_name(req.name)
        assert key in pins, f"{req.name} is in pyproject.toml but not in requirements.lock: {REFRESH}"
        version = pins[key][1]
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements.lock has {req.name}=={version}, outside pyproject's {req}: {REFRESH}")


def test_installed_environment_matches_lock():
    stale = []
    for key, (name, locked) in sorted(_lock().items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            stale.append(f"{name}: locked {locked}, not installed")
            continue
        if key == "torch":  # the CPU (or a CUDA) build carries a local label such as +cpu
            installed = Version(installed).public
        if Version(installed) != Version(locked):
            stale.append(f"{name}: locked {locked}, installed {installed}")
    assert not stale, f"the environment differs from requirements.lock ({REFRESH}):\n" + "\n".join(stale)
