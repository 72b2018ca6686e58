"""Consent enforcement: every personal-data field decides, per request, from one batched
lookup of its subjects' consents, and audits what it lets out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from strawberry.extensions import FieldExtension
from strawberry.schema import Schema
from strawberry.types import Info

from hub.audit import AuditEvent
from hub.errors import ConsentRequired, SourceUnavailable
from hub.policy.consent import ConsentEvent, Decision, consent_states, decide, mask
from hub.resolvers.consents import consent_events
from hub.responses import AuditedDecision


class PersonalData(FieldExtension):
    """Marks a field as personal data of the person (contact) whose id is `source.<subject>`,
    the object's own `id` by default: `consent.yaml` rules it."""

    def __init__(self, *, subject: str = "id") -> None:
        self.subject = subject

    async def resolve_async(
        self, next_: Callable[..., Awaitable[Any]], source: Any, info: Info, **kwargs: Any
    ) -> Any:
        value = await next_(source, info, **kwargs)
        if value is None:
            return None
        context = info.context
        context.personal_paths.append(tuple(info.path.as_list()))
        coordinate = f"{info._raw_info.parent_type.name}.{info.field_name}"
        rule = context.consent.fields[coordinate]
        subject = getattr(source, self.subject)
        history = await context.loaders.consents_by_contact.load(subject)
        now = datetime.now(UTC)
        events = consent_events(history)
        states = consent_states(events, now=now)
        decision = decide(rule, context.principal.purpose, states)
        _valid_until(context, events, now)
        reason = None if decision is Decision.ALLOW else "no basis for the purpose"
        decided = (coordinate, subject, decision.value, reason)
        context.decisions.append(decided)
        recorded = record_decisions(context, [decided], now)
        if decision is Decision.REDACT:
            raise ConsentRequired(
                "The person has no valid consent or basis for your purpose.",
                purpose=context.principal.purpose,
            )
        if not recorded:  # no personal value leaves unaudited, not even a masked one
            raise SourceUnavailable(
                "audit", "The audit trail cannot record this read now; the value is withheld."
            )
        return value if decision is Decision.ALLOW else mask(rule.mask, str(value))


def personal_fields(schema: Schema) -> list[str]:
    """The coordinates of every field of the schema that carries `PersonalData`."""
    names = schema.config.name_converter
    found = []
    for concrete in schema.schema_converter.type_map.values():
        definition = concrete.definition
        for field in getattr(definition, "fields", []):
            if any(isinstance(e, PersonalData) for e in field.extensions):
                type_name = getattr(definition, "name", "")
                found.append(f"{type_name}.{names.get_graphql_name(field)}")
    return sorted(found)


def _valid_until(context: Any, events: Iterable[ConsentEvent], now: datetime) -> None:
    """Bring forward the moment the request's answer stops being true: the next expiry."""
    ahead = [e.expires_at for e in events if e.expires_at is not None and e.expires_at > now]
    if context.answer_valid_until is not None:
        ahead.append(context.answer_valid_until)
    context.answer_valid_until = min(ahead, default=None)


def record_decisions(context: Any, decisions: Sequence[AuditedDecision], now: datetime) -> bool:
    """Consent decisions on the audit trail, as the caller of `context` made them at `now`:
    all kept (True), or none (the trail is full) and no value they decide may be served.
    Each decision is counted here too, on every path that serves one."""
    metrics = getattr(context, "metrics", None)
    if metrics is not None:
        for coordinate, _subject, decision, _reason in decisions:
            metrics.record_consent_decision(coordinate, decision)
    if context.audit is None:
        return True
    recorded: bool = context.audit.record(
        *(
            AuditEvent.by(
                context.principal,
                at=now,
                coordinate=coordinate,
                decision=decision,
                subject=subject,
                reason=reason,
            )
            for coordinate, subject, decision, reason in decisions
        )
    )
    return recorded
