"""Money in the schema: an exact decimal amount and an ISO 4217 currency."""

from __future__ import annotations

from decimal import Decimal

import strawberry

from hub.money import from_minor


@strawberry.type
class Money:
    amount: Decimal
    currency: str

    @classmethod
    def from_minor(cls, minor: int | None, currency: str | None) -> Money | None:
        if minor is None or currency is None:
            return None
        return cls(amount=from_minor(minor, currency), currency=currency)


@strawberry.input
class MoneyInput:
    amount: Decimal
    currency: str
