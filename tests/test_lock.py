"""requirements.lock pins every dependency pyproject.toml names, within its range, with hashes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)")


def locked() -> dict[str, tuple[str, int]]:
    """Each locked package: its version and the number of hashes given for it."""
    pins: dict[str, tuple[str, int]] = {}
    name = ""
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        found = PIN.match(line)
        if found:
            name = canonicalize_name(found[1])
            pins[name] = (found[2], 0)
        elif line.strip().startswith("--hash=sha256:") and name:
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
    return pins


def test_every_dependency_is_locked_within_its_range_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    pins = locked()
    stale = []
    for text in wanted:
        requirement = Requirement(text)
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None or pin[1] == 0 or not requirement.specifier.contains(pin[0]):
            stale.append(f"{text}: {pin}")
    assert stale == [], "run `make lock`: " + "; ".join(stale)
