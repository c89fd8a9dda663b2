"""Offline Telegram Bot API emulator: a spec-validating fake server for tests and the demo."""

from .server import Call, FakeBotAPI, FakeTelegram
from .spec import EntityParseError, Spec, html_to_plain, load_spec, parse_html, validate_request

__all__ = [
    "Call",
    "EntityParseError",
    "FakeBotAPI",
    "FakeTelegram",
    "Spec",
    "html_to_plain",
    "load_spec",
    "parse_html",
    "validate_request",
]
