"""Numbers as people type them: ASCII digits only.

Python's ``str.isdecimal``, ``int()`` and ``\\d`` also take other scripts' digits ("٥", "５", "१०"), which no till
prints and no cashier means; every number a person or a till sends goes through here or an ``re.ASCII`` pattern.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field


def is_whole(text: str) -> bool:
    """A non-negative whole number written in ASCII digits."""
    return text.isascii() and text.isdecimal()


def whole(text: str) -> int | None:
    """The number, or None when ``text`` is not one or does not fit a 64-bit column (an id made up by hand)."""
    text = text.strip()
    if not is_whole(text) or len(text) > len(str(MAX_ID)):
        return None
    number = int(text)
    return number if number <= MAX_ID else None


# Row ids and counts in callback data and API paths fit a signed 64-bit column; anything larger is forged.
MAX_ID = 2**63 - 1
RowId = Annotated[int, Field(ge=0, le=MAX_ID)]
