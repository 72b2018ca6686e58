"""The shipped policy files load, cover every field, and stop the hub when they are wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hub.policies import load_for_schema, load_policies
from hub.policy.access import PolicyError
from hub.schema.access import schema_coordinates
from hub.schema.root import build_schema
from hub.settings import Settings
from tests.conftest import ROOT

TYPES = schema_coordinates(build_schema(Settings())._schema)


def test_the_shipped_access_policy_covers_every_field() -> None:
    policies = load_for_schema(ROOT / "policies", build_schema(Settings()))
    assert policies.field_scopes.uncovered() == []
    assert policies.field_scopes.scopes[("Contact", "email")] == frozenset({"contacts:read"})
    assert policies.field_scopes.scopes[("Mutation", "eraseContact")] == frozenset(
        {"role:dpo", "contacts:read", "consents:write"}
    )


def test_a_misspelt_field_stops_the_hub_naming_file_line_and_entry(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    path = tmp_path / "policies" / "access.yaml"
    text = path.read_text()
    line = text.splitlines().index("  Contact.influencer: influencers:read") + 1
    path.write_text(text.replace("Contact.influencer:", "Contact.influencr:"))
    with pytest.raises(PolicyError) as raised:
        load_policies(tmp_path / "policies", schema_types=TYPES)
    assert str(raised.value) == (
        f"access.yaml line {line}: fields.Contact.influencr: Contact has no field 'influencr'"
    )


def test_an_unknown_role_stops_the_hub_naming_its_line(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    path = tmp_path / "policies" / "access.yaml"
    text = path.read_text()
    line = text.splitlines().index("  analyst:") + 1
    path.write_text(text.replace("  analyst:", "  analist:"))
    with pytest.raises(PolicyError) as raised:
        load_policies(tmp_path / "policies", schema_types=TYPES)
    assert str(raised.value).startswith(f"access.yaml line {line}: roles.analist: unknown role")


def test_a_consents_free_text_needs_a_consent_rule_or_the_hub_does_not_start(
    tmp_path: Path,
) -> None:
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    path = tmp_path / "policies" / "consent.yaml"
    text = path.read_text()
    start = text.index("  Consent.evidence:")
    path.write_text(text[:start])
    shipped = load_for_schema(ROOT / "policies", build_schema(Settings()))
    with pytest.raises(PolicyError) as raised:
        load_for_schema(tmp_path / "policies", build_schema(Settings()))
    assert str(raised.value) == (
        "consent.yaml: personal-data field Consent.evidence has no rule; "
        "add it under `fields` with a basis for each purpose"
    )
    assert {"Consent.source", "Consent.evidence"} <= set(shipped.consent.fields)
