"""Money as integer minor units in the store and exact decimals at the edge."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from hub.errors import BadUserInput

_ZERO_DECIMAL = frozenset({"JPY", "KRW", "CLP", "VND", "ISK", "UGX", "XOF", "XAF"})
_CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_AMOUNT = Decimal("1000000000000")


def exponent(currency: str) -> int:
    return 0 if currency in _ZERO_DECIMAL else 2


def to_minor(amount: Decimal, currency: str, *, argument: str) -> int:
    """Minor units of a non-negative amount, refusing more decimals than the currency has."""
    if not _CURRENCY.match(currency):
        raise BadUserInput(
            "`currency` must be an ISO 4217 code such as EUR.", argument=f"{argument}.currency"
        )
    # Range first: arithmetic on a huge exponent would overflow or round.
    if not amount.is_finite() or amount < 0 or amount > MAX_AMOUNT:
        raise BadUserInput(
            f"`amount` must be between 0 and {MAX_AMOUNT}.", argument=f"{argument}.amount"
        )
    places = exponent(currency)
    quantum = Decimal(1).scaleb(-places)
    try:
        exact = amount.quantize(quantum)
    except InvalidOperation:
        exact = None
    if exact is None or exact != amount:
        raise BadUserInput(
            f"{currency} amounts have at most {places} decimal places.",
            argument=f"{argument}.amount",
        )
    return int(exact.scaleb(places))


def from_minor(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))
