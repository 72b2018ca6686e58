"""Phone numbers in the form two of them are compared in: E.164."""

from __future__ import annotations

import phonenumbers


def e164(phone: str | None) -> str | None:
    """`phone` as E.164 (`+48221234567`), or None when it is not a possible number. A number
    without its country code (no leading `+`) cannot be placed, and is None too."""
    if not phone:
        return None
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
