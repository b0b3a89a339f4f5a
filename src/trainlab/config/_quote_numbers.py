"""The numbers a quote states, and the numbers a config value holds, for the source checks.

A report writes one number in many ways: ``256``, ``0.2``, ``1e-4``, ``1.5e-3``,
``1×10^{-4}``, ``1x10^-4``, ``$1 \\times 10^{-4}$``, ``10^{-4}``, ``80/20``, ``10,000``,
``45k``, ``5 %``, ``twenty``; a split ``80/20`` is 80 and 20, and as its parts of 100,
0.8 and 0.2. :func:`quote_numbers` reads them all; where a form is
ambiguous (a percentage, a thousands separator, a ``k``) it returns every reading, since
the check it serves only asks whether the config holds *one* of the stated numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

REL_TOL = 1e-9

_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "hundred": 100,
}
_MINUS = "-−+"  # a typeset report writes U+2212 for the minus of an exponent
_TIMES = r"(?:[x×*·]|\\times|\\cdot)"


def _power(name: str) -> str:
    """``10^{-4}``, ``10^-4``, with the exponent captured as ``name``."""
    return rf"10\s*\^\s*\{{?\s*(?P<{name}>[{_MINUS}]?\s*\d+)\s*\}}?"


# Digits glued to a letter belong to a name (L2, conv2d, VGG16), not to a quantity; an x
# before them is a product (3x3), so it does not count as a letter.
_START = r"(?<![A-WYZa-wyz_\d.])"
_NUMBER = re.compile(
    rf"""{_START}(?:
      (?P<mant>\d+(?:\.\d*)?|\.\d+)\s*{_TIMES}\s*{_power("exp1")}
    | {_power("exp2")}
    | (?P<plain>\d{{1,3}}(?:,\d{{3}})+|\d+(?:\.\d*)?|\.\d+)
      (?:[eE](?P<exp3>[{_MINUS}]?\d+))?
      (?P<suffix>\s*%|k(?![A-Za-z]))?
    )""",
    re.VERBOSE,
)
_SPLIT = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)(?![\d.])")
_VALUE_DIGITS = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+−]?\d+)?")
_WORD = re.compile(r"\b(" + "|".join(_WORDS) + r")(?:[\s-]+(hundred))?\b", re.IGNORECASE)


def _exponent(text: str) -> int:
    return int(text.replace(" ", "").replace("−", "-"))


def quote_numbers(text: str) -> list[float]:
    """Every number ``text`` states, each reading of an ambiguous one included, in order.

    Args:
        text: a quote from a report or a line of code.

    Returns:
        Unsigned values (a leading minus is a hyphen as often as a sign), without repeats.
    """
    found: list[float] = []
    for match in _NUMBER.finditer(text):
        if match["mant"] is not None:
            found.append(float(match["mant"]) * 10.0 ** _exponent(match["exp1"]))
        elif match["exp2"] is not None:
            found.append(10.0 ** _exponent(match["exp2"]))
        else:
            found.extend(_plain_readings(match["plain"], match["exp3"], match["suffix"]))
    for match in _SPLIT.finditer(text):
        parts = [float(match[1]), float(match[2])]
        if same_number(sum(parts), 100.0):  # 80/20: a split in percent, also 0.8 and 0.2
            found.extend(p / 100 for p in parts)
    for match in _WORD.finditer(text):
        value = _WORDS[match[1].lower()]
        found.append(float(value * 100 if match[2] and value != 100 else value))
    unique: list[float] = []
    for value in found:
        if not any(same_number(value, seen) for seen in unique):
            unique.append(value)
    return unique


def _plain_readings(digits: str, exponent: str | None, suffix: str | None) -> list[float]:
    """``10,000`` is ten thousand or the list 10, 000; ``5 %`` is 5 or 0.05; ``45k`` 45000 or 45."""
    values = [float(digits.replace(",", ""))]
    if "," in digits:
        values += [float(part) for part in digits.split(",")]
    if exponent is not None:
        values = [v * 10.0 ** _exponent(exponent) for v in values]
    suffix = (suffix or "").strip()
    if suffix == "%":
        values += [v / 100 for v in values]
    elif suffix == "k":
        values += [v * 1000 for v in values]
    return values


def value_numbers(value: Any) -> Iterator[float]:
    """The numbers a config value holds, at any depth: ints and floats (not booleans), the
    digits in strings (``cifar10`` holds 10) and the length of each list (a quote counts
    layers: "two convolutional layers" is ``filters: [32, 32]``).
    """
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        if math.isfinite(value):
            yield abs(float(value))
    elif isinstance(value, str):
        # A value's digits are never prose, so those glued to letters count too.
        for match in _VALUE_DIGITS.finditer(value):
            yield abs(float(match[0].replace("−", "-")))
    elif isinstance(value, dict):
        for item in value.values():
            yield from value_numbers(item)
    elif isinstance(value, list | tuple):
        if value:
            yield float(len(value))
        for item in value:
            yield from value_numbers(item)


def same_number(a: float, b: float) -> bool:
    """Equal within a relative tolerance of 1e-9 (``1e-4`` and ``0.0001`` are the same)."""
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0)


__all__ = ["REL_TOL", "quote_numbers", "same_number", "value_numbers"]
