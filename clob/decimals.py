"""Decimal strings at the edge, integer step counts inside the engine.

Prices are held as a count of ticks and quantities as a count of lots, so the
matching code only ever adds and compares Python ints. This module converts a
plain decimal string (``"100.25"``) to a whole number of steps of a given
step size and back, without floats and without the ``decimal`` module.
"""

from __future__ import annotations

import re
from typing import Final

# A plain decimal: optional minus sign, digits with an optional fraction (or a
# bare fraction such as ".5"). No exponent, no whitespace, no underscores, ASCII
# digits only (``\d`` would also accept other scripts' digits).
_DECIMAL: Final = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")

# Longer strings are refused as malformed so that int() never meets a number
# with thousands of digits (CPython limits str->int conversion to 4300 digits).
MAX_DECIMAL_CHARS: Final = 100

# Upper bound (exclusive) of a step count. Keeps every integer the engine
# stores within msgpack's 64-bit range; larger values are out of range.
MAX_STEPS: Final = 10**18

# Bounded caches: a decimal string seen before converts with one dict lookup.
_CACHE_LIMIT: Final = 1 << 16


def is_decimal(text: str) -> bool:
    """Whether ``text`` is a plain decimal number (the ``bad_command`` check)."""
    return len(text) <= MAX_DECIMAL_CHARS and _DECIMAL.fullmatch(text) is not None


def split_decimal(text: str) -> tuple[int, int]:
    """``text`` (already checked by :func:`is_decimal`) as ``(digits, scale)``.

    The value is ``digits / 10**scale``; trailing fractional zeros are dropped so
    equal values give equal pairs.
    """
    negative = text.startswith("-")
    if negative:
        text = text[1:]
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    digits = int((whole or "0") + frac)
    return (-digits if negative else digits), len(frac)


def format_decimal(digits: int, scale: int) -> str:
    """The plain decimal string of ``digits / 10**scale`` (no exponent)."""
    if scale == 0:
        return str(digits)
    sign = "-" if digits < 0 else ""
    body = str(abs(digits)).rjust(scale + 1, "0")
    return f"{sign}{body[:-scale]}.{body[-scale:]}"


class Step:
    """A positive step size (tick or lot) and conversions to and from it.

    ``steps_of`` returns 0 for a well-formed decimal that is not a positive whole
    multiple of the step (or is out of range); callers map 0 to ``invalid_price``
    or ``invalid_qty``. Results of both directions are cached, bounded; every
    key of ``known`` is a well-formed decimal string.
    """

    __slots__ = ("_to_text", "digits", "known", "scale", "text")

    def __init__(self, digits: int, scale: int) -> None:
        assert digits > 0
        self.digits = digits
        self.scale = scale
        self.text = format_decimal(digits, scale)
        self.known: dict[str, int] = {}
        self._to_text: dict[int, str] = {}

    @classmethod
    def parse(cls, text: str) -> Step | None:
        """The step for a decimal string, or None when it is not positive."""
        digits, scale = split_decimal(text)
        if digits <= 0:
            return None
        return cls(digits, scale)

    def steps_of(self, text: str) -> int:
        """Whole number of steps in ``text`` (a checked decimal), or 0 if invalid."""
        cached: int | None = self.known.get(text)
        if cached is not None:
            return cached
        digits, scale = split_decimal(text)
        # value / step = (digits * 10**self.scale) / (self.digits * 10**scale)
        numerator: int = digits * 10**self.scale
        denominator: int = self.digits * 10**scale
        steps = numerator // denominator
        if digits <= 0 or numerator % denominator or steps >= MAX_STEPS:
            steps = 0
        if len(self.known) >= _CACHE_LIMIT:
            self.known.clear()
        self.known[text] = steps
        return steps

    def text_of(self, steps: int) -> str:
        """Decimal string of ``steps`` whole steps."""
        text = self._to_text.get(steps)
        if text is None:
            text = format_decimal(steps * self.digits, self.scale)
            if len(self._to_text) >= _CACHE_LIMIT:
                self._to_text.clear()
            self._to_text[steps] = text
        return text
