"""Member codes: short, unambiguous, read aloud at the till and typed from a screen."""

from __future__ import annotations

import re
import secrets

# No 0/O or 1/I: codes are read aloud at the till and typed from a screen.
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 8
CODE_RE = re.compile(rf"^[{CODE_ALPHABET}]{{{CODE_LENGTH}}}$")


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(text: str) -> str | None:
    """A member code as typed (any case, spaces or dashes) in canonical form, or None."""
    code = re.sub(r"[\s-]", "", text).upper()
    return code if CODE_RE.match(code) else None
