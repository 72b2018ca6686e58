"""Reads the policy files in `HUB_POLICIES_DIR` into the pure policy objects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hub.policy.access import AccessPolicy, PolicyError, parse_access_policy


@dataclass(frozen=True, slots=True)
class Policies:
    access: AccessPolicy
    cost: dict[str, Any]
    consent: dict[str, Any]


def load_policies(directory: Path) -> Policies:
    """Parse and check the three files; a problem is `PolicyError` naming file and entry."""
    return Policies(
        access=parse_access_policy(_read(directory / "access.yaml"), source="access.yaml"),
        cost=_mapping(_read(directory / "cost.yaml"), "cost.yaml"),
        consent=_mapping(_read(directory / "consent.yaml"), "consent.yaml"),
    )


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"{path}:{line} is not valid YAML") from None


def _mapping(document: Any, source: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise PolicyError(f"{source}: expected a mapping at the top level")
    return document
