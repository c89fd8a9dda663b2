"""Validate Bot API requests against the machine-readable spec in ``api.json``.

The spec gives methods, fields and types; the limits Telegram only states in prose (text lengths,
callback data size, the HTML subset of ``parse_mode``) are checked by hand here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "CALLBACK_DATA_LIMIT",
    "CAPTION_LIMIT",
    "MESSAGE_TEXT_LIMIT",
    "EntityParseError",
    "Field",
    "Spec",
    "html_to_plain",
    "load_spec",
    "parse_html",
    "validate_request",
]

MESSAGE_TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64
CALLBACK_ANSWER_LIMIT = 200
COMMAND_DESCRIPTION_LIMIT = 256
MAX_COMMANDS = 100
INVOICE_TITLE_LIMIT = 32
INVOICE_DESCRIPTION_LIMIT = 255
INVOICE_PAYLOAD_LIMIT = 128
SUBSCRIPTION_PERIOD = 2592000  # createInvoiceLink: "Currently, it must always be 2592000 (30 days)"
SUBSCRIPTION_PRICE_LIMIT = 10000  # "Subscription price must no exceed 10000 Telegram Stars"
PARSE_MODES = frozenset({"html", "markdownv2", "markdown"})

_COMMAND_RE = re.compile(r"[a-z0-9_]{1,32}")
_START_PAYLOAD_RE = re.compile(r"[A-Za-z0-9_-]{0,64}")
# A deep link may sit in a URL button or inside HTML text; the payload ends where the URL does.
_START_LINK_RE = re.compile(r"(?:t\.me|telegram\.me)/[A-Za-z0-9_]+\?start=([^\s\"'<>&#]*)")
# Subtypes of a union name their discriminator in prose: 'Scope type, must be chat', 'always "user"'.
_CONST_RE = re.compile(r"(?:must be|always) [\"“]?([a-z0-9_]+)[\"”]?\s*$")
_BUTTON_EXCLUSIVE_RE = re.compile(r"Exactly one of the fields other than ([\w ,]+?) must be used")
_ATTACH = "attach://"
_MISSING = object()

_SCALAR_KINDS: dict[str, frozenset[str]] = {
    "Integer": frozenset({"int"}),
    "Float": frozenset({"int", "float"}),
    "String": frozenset({"str"}),
    "InputFile": frozenset({"str"}),
    "Boolean": frozenset({"bool"}),
    "True": frozenset({"bool"}),
}


# --------------------------------------------------------------------------------------------- HTML


class EntityParseError(ValueError):
    """Text is not valid Telegram HTML."""


_ALLOWED_TAGS = frozenset(
    {
        "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler",
        "a", "tg-emoji", "code", "pre", "blockquote",
    }
)  # fmt: skip
_ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "tg-emoji": "custom_emoji",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
}
_TAG_RE = re.compile(
    r"<(/?)([A-Za-z][A-Za-z0-9-]*)"
    r"((?:\s+[^\s=/>\"']+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?)*)"
    r"\s*(/?)>"
)
_ATTR_RE = re.compile(r"([^\s=/>\"']+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?")
_ENTITY_RE = re.compile(r"&(?:#([0-9]{1,8})|#[xX]([0-9a-fA-F]{1,8})|(lt|gt|amp|quot));")
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


@dataclass
class _OpenTag:
    name: str
    attrs: dict[str, str]
    offset: int  # in UTF-16 code units of the plain text, as Telegram counts entity offsets


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _decode_entity(match: re.Match[str]) -> str | None:
    dec, hexa, named = match.groups()
    if named:
        return _NAMED_ENTITIES[named]
    code = int(dec) if dec else int(hexa, 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code)


def _unescape_attr(value: str) -> str:
    if value[:1] in "\"'" and value[-1:] == value[:1] and len(value) >= 2:
        value = value[1:-1]
    # Telegram keeps an undecodable '&' in an attribute literally, so no error here.
    return _ENTITY_RE.sub(lambda m: _decode_entity(m) or m.group(0), value)


def _parse_attrs(raw: str) -> dict[str, str]:
    return {m.group(1).lower(): _unescape_attr(m.group(2) or "") for m in _ATTR_RE.finditer(raw)}


def _check_start_tag(name: str, attrs: dict[str, str], at: int) -> None:
    if name == "span" and attrs.get("class") != "tg-spoiler":
        raise EntityParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {at}')
    if name == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
        raise EntityParseError(f"Custom emoji identifier must be a number at byte offset {at}")


def _make_entity(tag: _OpenTag, end: int, inside_pre: bool) -> dict[str, Any] | None:
    length = end - tag.offset
    if length <= 0:
        return None
    entity: dict[str, Any] = {"type": _ENTITY_TYPES[tag.name], "offset": tag.offset, "length": length}
    if tag.name == "a":
        if not tag.attrs.get("href"):
            return None
        entity["url"] = tag.attrs["href"]
    elif tag.name == "tg-emoji":
        entity["custom_emoji_id"] = tag.attrs["emoji-id"]
    elif tag.name == "blockquote" and "expandable" in tag.attrs:
        entity["type"] = "expandable_blockquote"
    elif tag.name == "code" and inside_pre:
        # <pre><code class="language-x"> is one pre entity with a language, not two entities.
        return None
    elif tag.name == "pre":
        entity["language"] = tag.attrs.get("_language", "")
        if not entity["language"]:
            del entity["language"]
    return entity


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram HTML into plain text and MessageEntity dicts; raise EntityParseError if invalid.

    Stricter than Telegram on purpose: a bare ``&``, ``<`` or ``>`` is an error (Telegram sometimes
    keeps them literally), because in a bot it nearly always means user input was not escaped.
    """
    out: list[str] = []
    out_len = 0  # UTF-16 length of the text emitted so far
    stack: list[_OpenTag] = []
    entities: list[dict[str, Any]] = []
    i = 0
    n = len(text)
    byte_offset = 0
    last = 0

    def emit(chunk: str) -> None:
        nonlocal out_len
        out.append(chunk)
        out_len += _utf16_len(chunk)

    while i < n:
        ch = text[i]
        if ch not in "<>&":
            j = i + 1
            while j < n and text[j] not in "<>&":
                j += 1
            emit(text[i:j])
            i = j
            continue
        byte_offset += len(text[last:i].encode())
        last = i
        if ch == ">":
            raise EntityParseError(f'Character ">" must be escaped as "&gt;" at byte offset {byte_offset}')
        if ch == "&":
            m = _ENTITY_RE.match(text, i)
            if m is None:
                raise EntityParseError(f'Character "&" must be escaped as "&amp;" at byte offset {byte_offset}')
            decoded = _decode_entity(m)
            if decoded is None:
                raise EntityParseError(f"Invalid character reference at byte offset {byte_offset}")
            emit(decoded)
            i = m.end()
            continue
        m = _TAG_RE.match(text, i)
        if m is None:
            if i + 1 < n and (text[i + 1].isalpha() or text[i + 1] == "/"):
                raise EntityParseError(f"Unclosed tag at byte offset {byte_offset}")
            raise EntityParseError(f'Character "<" must be escaped as "&lt;" at byte offset {byte_offset}')
        closing, raw_name, raw_attrs, self_closing = m.groups()
        name = raw_name.lower()
        if closing:
            if raw_attrs.strip() or self_closing:
                raise EntityParseError(f"Unexpected end tag at byte offset {byte_offset}")
            if not stack:
                raise EntityParseError(f"Unexpected end tag at byte offset {byte_offset}")
            top = stack[-1]
            if top.name != name:
                raise EntityParseError(
                    f'Unmatched end tag at byte offset {byte_offset}, expected "</{top.name}>", found "</{name}>"'
                )
            stack.pop()
            inside_pre = bool(stack) and stack[-1].name == "pre"
            if top.name == "code" and inside_pre and top.attrs.get("class", "").startswith("language-"):
                stack[-1].attrs["_language"] = top.attrs["class"][len("language-") :]
            entity = _make_entity(top, out_len, inside_pre)
            if entity is not None:
                entities.append(entity)
        else:
            if name not in _ALLOWED_TAGS:
                raise EntityParseError(f'Unsupported start tag "{name}" at byte offset {byte_offset}')
            if self_closing:
                raise EntityParseError(f'Self-closing tag "{name}" at byte offset {byte_offset}')
            attrs = _parse_attrs(raw_attrs)
            _check_start_tag(name, attrs, byte_offset)
            stack.append(_OpenTag(name, attrs, out_len))
        i = m.end()
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def html_to_plain(text: str) -> str:
    """Return the text a user sees for Telegram HTML; raise EntityParseError (a ValueError) if invalid."""
    return parse_html(text)[0]


# --------------------------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class Field:
    """One parameter of a method or field of a type."""

    name: str
    types: tuple[str, ...]
    required: bool
    const: str | None = None  # discriminator value of a union member ("chat" for BotCommandScopeChat)
    # A String field that takes "attach://<part>" (InputMedia.media); InputFile-typed fields are checked by type.
    attachable: bool = False


def _fields(raw: list[dict[str, Any]]) -> tuple[Field, ...]:
    out = []
    for f in raw:
        types = tuple(f["types"])
        const = None
        if f["name"] in ("type", "status", "source") and types == ("String",):
            m = _CONST_RE.search(f["description"])
            const = m.group(1) if m else None
        attachable = "attach://" in f["description"] and "InputFile" not in types
        out.append(Field(f["name"], types, bool(f["required"]), const, attachable))
    return tuple(out)


def _check_attachment(f: Field, value: Any, path: str, files: set[str]) -> list[str]:
    if f.attachable and isinstance(value, str) and value.startswith(_ATTACH) and value[len(_ATTACH) :] not in files:
        return [f'field "{path}": file "{value}" is not attached to the request']
    return []


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


_KIND_NAMES = {
    "bool": "Boolean",
    "int": "Integer",
    "float": "Float",
    "str": "String",
    "list": "Array",
    "dict": "Object",
}


def _walk_dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from _walk_dicts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_dicts(v)


def _walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_strings(v)


class Spec:
    """The Bot API as described by api.json, with request validation."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.version: str = data.get("version", "")
        self.methods: dict[str, tuple[Field, ...]] = {}
        self.returns: dict[str, tuple[str, ...]] = {}
        self._method_names: dict[str, str] = {}
        for name, m in data["methods"].items():
            self.methods[name] = _fields(m.get("fields", []))
            self.returns[name] = tuple(m.get("returns", []))
            self._method_names[name.lower()] = name
        self.types: dict[str, tuple[Field, ...]] = {}
        self.subtypes: dict[str, tuple[str, ...]] = {}
        for name, t in data["types"].items():
            self.types[name] = _fields(t.get("fields", []))
            if t.get("subtypes"):
                self.subtypes[name] = tuple(t["subtypes"])
        self._kinds_cache: dict[str, frozenset[str]] = {}
        self.button_exclusive = self._button_exclusive(data)

    @staticmethod
    def _button_exclusive(data: dict[str, Any]) -> frozenset[str]:
        """Fields of InlineKeyboardButton that are *not* its action (text, style, ...)."""
        desc = " ".join(data["types"].get("InlineKeyboardButton", {}).get("description", []))
        m = _BUTTON_EXCLUSIVE_RE.search(desc)
        if m is None:
            return frozenset({"text"})
        return frozenset(p.strip() for p in re.split(r",|\band\b", m.group(1)) if p.strip())

    # ---------------------------------------------------------------- lookup

    def method_name(self, method: str) -> str | None:
        """Canonical spelling of a method name (Telegram matches them case-insensitively)."""
        return self._method_names.get(method.lower())

    def method_fields(self, method: str) -> dict[str, Field]:
        name = self.method_name(method)
        return {f.name: f for f in self.methods[name]} if name else {}

    def _kinds(self, type_expr: str) -> frozenset[str]:
        cached = self._kinds_cache.get(type_expr)
        if cached is not None:
            return cached
        if type_expr.startswith("Array of "):
            kinds = frozenset({"list"})
        elif type_expr in _SCALAR_KINDS:
            kinds = _SCALAR_KINDS[type_expr]
        elif type_expr in self.subtypes:
            self._kinds_cache[type_expr] = frozenset()  # guards against self-referencing unions
            kinds = frozenset().union(*(self._kinds(s) for s in self.subtypes[type_expr]))
        else:
            kinds = frozenset({"dict"})
        self._kinds_cache[type_expr] = kinds
        return kinds

    def example(self, type_expr: str, _depth: int = 0) -> Any:
        """A minimal valid value of a type: required fields only, zero-like placeholders."""
        scalars: dict[str, Any] = {"Integer": 0, "Float": 0.0, "String": "", "Boolean": False, "True": True}
        if type_expr.startswith("Array of ") or _depth > 8:
            return []
        if type_expr in scalars:
            return scalars[type_expr]
        if type_expr in self.subtypes:
            return self.example(self.subtypes[type_expr][0], _depth + 1)
        obj: dict[str, Any] = {}
        for f in self.types.get(type_expr, ()):
            if f.const is not None:
                obj[f.name] = f.const
            elif f.required:
                obj[f.name] = self.example(f.types[0], _depth + 1)
        return obj

    def union_member(self, union: str, tag: str) -> str | None:
        """The member of ``union`` whose discriminator equals ``tag`` (ChatMember, "kicked")."""
        for member in self.subtypes.get(union, ()):
            if any(f.const == tag for f in self.types.get(member, ())):
                return member
        return None

    # ---------------------------------------------------------------- type checks

    def check_value(self, value: Any, types: tuple[str, ...], path: str, files: set[str]) -> list[str]:
        """Errors for ``value`` against any of ``types`` (empty if it matches one)."""
        kind = _kind(value)
        if kind == "str" and value.startswith(_ATTACH) and "InputFile" in types:
            candidates = ["InputFile"]
        else:
            candidates = [t for t in types if kind in self._kinds(t)]
        if not candidates:
            return [f'field "{path}": expected {" or ".join(types)}, got {_KIND_NAMES.get(kind, kind)}']
        best: list[str] | None = None
        for t in candidates:
            errors = self._check_one(value, t, path, files)
            if not errors:
                return []
            if best is None or len(errors) < len(best):
                best = errors
        return best or []

    def _check_one(self, value: Any, type_expr: str, path: str, files: set[str]) -> list[str]:
        if type_expr.startswith("Array of "):
            item_type = (type_expr[len("Array of ") :],)
            errors: list[str] = []
            for i, item in enumerate(value):
                errors += self.check_value(item, item_type, f"{path}[{i}]", files)
            return errors
        if type_expr == "True" and value is not True:
            return [f'field "{path}": must be True']
        if type_expr == "InputFile":
            if not value.startswith(_ATTACH):
                return [f'field "{path}": expected an uploaded file']
            if value[len(_ATTACH) :] not in files:
                return [f'field "{path}": file "{value}" is not attached to the request']
            return []
        if type_expr in _SCALAR_KINDS:
            return []
        if type_expr in self.subtypes:
            return self._check_union(value, type_expr, path, files)
        return self.check_object(value, type_expr, path, files)

    def _check_union(self, value: Any, type_expr: str, path: str, files: set[str]) -> list[str]:
        members = self.subtypes[type_expr]
        if isinstance(value, dict):
            tagged = []
            for member in members:
                for f in self.types.get(member, ()):
                    if f.const is not None:
                        tagged.append((member, f))
            if tagged:
                for member, f in tagged:
                    if value.get(f.name) == f.const:
                        return self.check_object(value, member, path, files)
                field_name = tagged[0][1].name
                allowed = ", ".join(sorted({f.const or "" for _, f in tagged}))
                return [f'field "{path}": {type_expr} {field_name} "{value.get(field_name)}" is not one of {allowed}']
        return self.check_value(value, members, path, files)

    def check_object(self, value: Any, type_name: str, path: str = "", files: set[str] | None = None) -> list[str]:
        """Validate a decoded dict against a type of the spec."""
        files = files or set()
        if type_name in self.subtypes:
            return self._check_union(value, type_name, path or type_name, files)
        if type_name not in self.types:
            return [f'unknown type "{type_name}"']
        if not isinstance(value, dict):
            return [f'field "{path or type_name}": expected {type_name}, got {_KIND_NAMES[_kind(value)]}']
        fields = {f.name: f for f in self.types[type_name]}
        prefix = f"{path}." if path else ""
        errors: list[str] = []
        if not fields:  # placeholder types such as CallbackGame carry no information
            return errors
        for key in value:
            if key not in fields:
                errors.append(f'field "{prefix}{key}" is not a field of {type_name}')
        for f in fields.values():
            item = value.get(f.name, _MISSING)
            if item is _MISSING or item is None:
                if f.required:
                    errors.append(f'field "{prefix}{f.name}" of {type_name} is required')
                continue
            errors += self.check_value(item, f.types, prefix + f.name, files)
            errors += _check_attachment(f, item, prefix + f.name, files)
            if f.const is not None and item != f.const:
                errors.append(f'field "{prefix}{f.name}" must be "{f.const}" for {type_name}')
        return errors

    # ---------------------------------------------------------------- requests

    def coerce(self, raw: str, types: tuple[str, ...], files: set[str]) -> Any:
        """Turn a form value (always a string) into the JSON value it stands for."""
        if all(t == "String" for t in types):
            return raw
        if raw.startswith(_ATTACH) and "InputFile" in types:
            return raw
        decoded: Any = _MISSING
        if raw.lower() in ("true", "false") and ("Boolean" in types or "True" in types):
            decoded = raw.lower() == "true"
        else:
            try:
                decoded = json.loads(raw)
            except ValueError:
                decoded = _MISSING
        # Prefer the typed reading ("123" -> 123 for chat_id) unless only the raw string validates.
        if (
            decoded is not _MISSING
            and not isinstance(decoded, str)
            and ("String" not in types or not self.check_value(decoded, types, "", files))
        ):
            return decoded
        return raw

    def parse_request(
        self, method: str, params: dict[str, Any], files: set[str] | frozenset[str] = frozenset()
    ) -> tuple[dict[str, Any], list[str]]:
        """Decode raw request params (form strings or JSON values) and validate them.

        ``files`` are the names of uploaded multipart parts; a part named like a parameter counts as
        that parameter (``photo=@file``), any other part must be referenced as ``attach://<name>``.
        """
        file_names = set(files)
        name = self.method_name(method)
        if name is None:
            return dict(params), [f'method "{method}" not found']
        fields = {f.name: f for f in self.methods[name]}
        decoded: dict[str, Any] = {}
        errors: list[str] = []
        for key, value in params.items():
            f = fields.get(key)
            if f is None:
                errors.append(f'unknown parameter "{key}" for method {name}')
                decoded[key] = value
                continue
            decoded[key] = self.coerce(value, f.types, file_names) if isinstance(value, str) else value
        for part in sorted(file_names):
            if part in fields and part not in decoded:
                decoded[part] = _ATTACH + part
        for f in fields.values():
            value = decoded.get(f.name)
            if value is None:
                if f.required and f.name == "text" and "parse_mode" in fields:
                    errors.append("message text is empty")
                elif f.required:
                    errors.append(f'parameter "{f.name}" is required')
                continue
            errors += self.check_value(value, f.types, f.name, file_names)
            errors += _check_attachment(f, value, f.name, file_names)
        errors += self._check_limits(name, decoded)
        return decoded, errors

    def validate_request(
        self, method: str, params: dict[str, Any], files: set[str] | frozenset[str] = frozenset()
    ) -> list[str]:
        return self.parse_request(method, params, files)[1]

    # ---------------------------------------------------------------- prose limits

    def _check_limits(self, method: str, params: dict[str, Any]) -> list[str]:
        errors: list[str] = []
        top_text_limited = "text" in params and "parse_mode" in self.method_fields(method)
        for obj in _walk_dicts(params):
            errors += _check_formatted(obj, top_level=obj is params and top_text_limited)
            if isinstance(obj.get("inline_keyboard"), list):
                errors += self._check_inline_keyboard(obj["inline_keyboard"])
            if isinstance(obj.get("keyboard"), list):
                errors += _check_reply_keyboard(obj["keyboard"])
        if method == "setMyCommands":
            errors += _check_commands(params.get("commands", []))
        if method in ("sendInvoice", "createInvoiceLink"):
            errors += _check_invoice(params)
        if method == "answerPreCheckoutQuery" and params.get("ok") is False and not params.get("error_message"):
            errors.append("answerPreCheckoutQuery: error_message is required when ok is false")
        if method == "answerCallbackQuery" and len(params.get("text", "")) > CALLBACK_ANSWER_LIMIT:
            errors.append(f"callback answer text is longer than {CALLBACK_ANSWER_LIMIT} characters")
        if (
            method.startswith("editMessage")
            and "inline_message_id" not in params
            and ("chat_id" not in params or "message_id" not in params)
        ):
            errors.append("message identifier is not specified")
        for s in _walk_strings(params):
            for m in _START_LINK_RE.finditer(s):
                if not _START_PAYLOAD_RE.fullmatch(m.group(1)):
                    errors.append(f'invalid /start payload "{m.group(1)}": at most 64 characters of A-Z a-z 0-9 _ -')
        return errors

    def _check_inline_keyboard(self, rows: list[Any]) -> list[str]:
        errors: list[str] = []
        for r, row in enumerate(rows):
            for c, button in enumerate(row if isinstance(row, list) else []):
                if not isinstance(button, dict):
                    continue
                where = f"inline_keyboard[{r}][{c}]"
                if not button.get("text"):
                    errors.append(f"{where}: button text must be non-empty")
                actions = [k for k in button if k not in self.button_exclusive]
                if not actions:
                    errors.append(
                        f"{where}: can't parse inline keyboard button: "
                        "Text buttons are unallowed in the inline keyboard"
                    )
                elif len(actions) > 1:
                    errors.append(f"{where}: exactly one button action must be used, got {', '.join(actions)}")
                data = button.get("callback_data")
                if isinstance(data, str) and not 1 <= len(data.encode()) <= CALLBACK_DATA_LIMIT:
                    errors.append(
                        f"{where}: BUTTON_DATA_INVALID: callback_data must be 1-{CALLBACK_DATA_LIMIT} bytes, "
                        f"got {len(data.encode())}"
                    )
        return errors


def _check_invoice(params: dict[str, Any]) -> list[str]:
    """Invoice limits from the prose of sendInvoice, and the rules for payments in Telegram Stars (XTR)."""
    errors: list[str] = []
    title, description, payload = params.get("title"), params.get("description"), params.get("payload")
    if isinstance(title, str) and not 1 <= len(title) <= INVOICE_TITLE_LIMIT:
        errors.append(f"invoice title must be 1-{INVOICE_TITLE_LIMIT} characters")
    if isinstance(description, str) and not 1 <= len(description) <= INVOICE_DESCRIPTION_LIMIT:
        errors.append(f"invoice description must be 1-{INVOICE_DESCRIPTION_LIMIT} characters")
    if isinstance(payload, str) and not 1 <= len(payload.encode()) <= INVOICE_PAYLOAD_LIMIT:
        errors.append(f"INVOICE_PAYLOAD_INVALID: payload must be 1-{INVOICE_PAYLOAD_LIMIT} bytes")
    prices = params.get("prices")
    if params.get("currency") == "XTR":
        if params.get("provider_token"):
            errors.append("payments in Telegram Stars take an empty provider_token")
        if isinstance(prices, list) and len(prices) != 1:
            errors.append("CURRENCY_TOTAL_AMOUNT_INVALID: payments in Telegram Stars take exactly one price")
        if "max_tip_amount" in params or "suggested_tip_amounts" in params:
            errors.append("payments in Telegram Stars take no tips")
        if any(
            params.get(key)
            for key in ("need_name", "need_phone_number", "need_email", "need_shipping_address", "is_flexible")
        ):
            errors.append("payments in Telegram Stars cannot ask for shipping or contact details")
    if isinstance(prices, list) and not all(
        isinstance(p, dict) and isinstance(p.get("amount"), int) and p["amount"] > 0 for p in prices
    ):
        errors.append("CURRENCY_TOTAL_AMOUNT_INVALID: every price must be a positive amount")
    if "subscription_period" in params:
        if params.get("currency") != "XTR":
            errors.append('SUBSCRIPTION_PERIOD_INVALID: a subscription_period needs the currency "XTR"')
        if params["subscription_period"] != SUBSCRIPTION_PERIOD:
            errors.append(f"SUBSCRIPTION_PERIOD_INVALID: subscription_period must be {SUBSCRIPTION_PERIOD}")
        if isinstance(prices, list) and sum(p.get("amount", 0) for p in prices if isinstance(p, dict)) > (
            SUBSCRIPTION_PRICE_LIMIT
        ):
            errors.append(f"SUBSCRIPTION_PRICE_INVALID: a subscription costs at most {SUBSCRIPTION_PRICE_LIMIT} Stars")
    markup = params.get("reply_markup")
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if isinstance(rows, list) and rows:
        first = rows[0][0] if isinstance(rows[0], list) and rows[0] else None
        if not (isinstance(first, dict) and first.get("pay") is True):
            errors.append("the first button of an invoice's keyboard must be a Pay button")
    return errors


def _check_reply_keyboard(rows: list[Any]) -> list[str]:
    errors: list[str] = []
    for r, row in enumerate(rows):
        for c, button in enumerate(row if isinstance(row, list) else []):
            text = button.get("text") if isinstance(button, dict) else button
            if isinstance(text, str) and not text:
                errors.append(f"keyboard[{r}][{c}]: button text must be non-empty")
    return errors


def _check_commands(commands: Any) -> list[str]:
    if not isinstance(commands, list):
        return []
    errors: list[str] = []
    if len(commands) > MAX_COMMANDS:
        errors.append(f"too many commands: {len(commands)} > {MAX_COMMANDS}")
    for i, cmd in enumerate(commands):
        if not isinstance(cmd, dict):
            continue
        command = cmd.get("command", "")
        if not isinstance(command, str) or not _COMMAND_RE.fullmatch(command):
            errors.append(
                f'BOT_COMMAND_INVALID: commands[{i}].command "{command}" must be 1-32 characters of a-z, 0-9 and _'
            )
        description = cmd.get("description", "")
        if isinstance(description, str) and not 1 <= len(description) <= COMMAND_DESCRIPTION_LIMIT:
            errors.append(
                f"BOT_COMMAND_DESCRIPTION_INVALID: commands[{i}].description must be "
                f"1-{COMMAND_DESCRIPTION_LIMIT} characters"
            )
    return errors


def _check_formatted(obj: dict[str, Any], top_level: bool) -> list[str]:
    """Check every text field of ``obj`` against its parse mode and length limit."""
    errors: list[str] = []
    targets: dict[str, str | None] = {}
    for key in ("text", "caption", "message_text"):
        if isinstance(obj.get(key), str):
            targets[key] = None
    for key, mode in obj.items():
        if not key.endswith("parse_mode") or not isinstance(mode, str):
            continue
        if mode.lower() not in PARSE_MODES:
            errors.append(f'unsupported parse_mode "{mode}"')
            continue
        prefix = key[: -len("parse_mode")]
        names = [prefix.rstrip("_")] if prefix else ["text", "caption", "message_text"]
        for name in names:
            if isinstance(obj.get(name), str):
                targets[name] = mode.lower()
    for key, mode in targets.items():
        raw: str = obj[key]
        plain = raw
        if mode == "html":
            try:
                plain = html_to_plain(raw)
            except EntityParseError as exc:
                errors.append(f"can't parse entities: {exc}")
                continue
        if key == "caption" and len(plain) > CAPTION_LIMIT:
            errors.append(f"message caption is too long: {len(plain)} > {CAPTION_LIMIT} characters")
        elif (key == "message_text" or (key == "text" and top_level)) and not plain.strip():
            errors.append("message text is empty")
        elif (key == "message_text" or (key == "text" and top_level)) and len(plain) > MESSAGE_TEXT_LIMIT:
            errors.append(f"message is too long: {len(plain)} > {MESSAGE_TEXT_LIMIT} characters")
    return errors


# --------------------------------------------------------------------------------------------- loading


@lru_cache(maxsize=8)
def _load(path: Path | None) -> Spec:
    if path is None:
        text = resources.files(__package__ or "emulator").joinpath("api.json").read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    return Spec(json.loads(text))


def load_spec(path: Path | None = None) -> Spec:
    """The spec bundled with this package (or at ``path``), parsed once and cached."""
    return _load(path)


def validate_request(method: str, params: dict[str, Any], files: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Errors (Telegram-style descriptions, without "Bad Request: ") for one request; empty if valid."""
    return load_spec().validate_request(method, params, files)
