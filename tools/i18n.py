"""Catalog upkeep for contributors: ``python tools/i18n.py update`` after changing texts, then translate,
then ``python tools/i18n.py compile``. ``check`` is what the test suite enforces."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ROOT / "notifications" / "locales"
POT = LOCALES / "messages.pot"
LANGS = ("en", "zh_Hans", "zh_Hant")
PLACEHOLDER = re.compile(r"\{[^{}]*\}")
# A count next to a noun that inflects: such a text needs ngettext, or English says "1 points".
COUNTED = re.compile(
    r"\{[^{}]+\}(?:</b>)? (?:[a-z]+ ){0,2}"
    r"(?:points|days|stamps|members|answers|ratings|rows|friends|referrals|characters|places|Stars)\b"
)
# Only Telegram's HTML tags: usage strings legitimately show "<member>", and translators translate those.
TAG = re.compile(r"</?(?:b|strong|i|em|u|ins|s|strike|del|span|tg-spoiler|a|tg-emoji|code|pre|blockquote)\b[^>]*>")
FIXED_DATE = datetime(2026, 1, 1, tzinfo=UTC)
# One register in Chinese: the polite "you" a shop uses with its customers, never the familiar one beside it.
POLITE, FAMILIAR = "您", "你"


def po_path(lang: str) -> Path:
    return LOCALES / lang / "LC_MESSAGES" / "messages.po"


def update() -> None:
    pybabel = str(Path(sys.executable).with_name("pybabel"))
    subprocess.run(
        [
            pybabel,
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "N_",
            "-k",
            "__",
            "--no-location",
            "--sort-output",
            "--omit-header",
            "--no-wrap",
            "-o",
            str(POT),
            ".",
        ],
        cwd=ROOT,
        check=True,
    )
    subprocess.run(
        [
            pybabel,
            "update",
            "-i",
            str(POT),
            "-d",
            str(LOCALES),
            "-D",
            "messages",
            "--no-fuzzy-matching",
            "--omit-header",
            "--ignore-obsolete",
            "--no-wrap",
        ],
        cwd=ROOT,
        check=True,
    )


def compiled(lang: str) -> bytes:
    with po_path(lang).open("rb") as handle:
        catalog = read_po(handle, locale=lang)
    # A fixed date keeps the .mo byte-for-byte reproducible, so "stale" means the texts changed.
    catalog.creation_date = catalog.revision_date = FIXED_DATE
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    return buffer.getvalue()


def compile_all() -> None:
    for lang in LANGS:
        po_path(lang).with_suffix(".mo").write_bytes(compiled(lang))


def forms(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A message's id or string as its forms: one for a plain entry, one per plural form for an ngettext entry."""
    return (value,) if isinstance(value, str) else tuple(value)


def problems() -> list[str]:
    """Untranslated or fuzzy entries, placeholders or HTML tags that differ, counts without a plural form, and
    stale .mo files."""
    found = []
    with POT.open("rb") as handle:
        template = {message.id for message in read_po(handle) if message.id}
    singular = {msgid for msgid in template if isinstance(msgid, str)}
    found += [
        f"count without a plural form (use ngettext): {msgid!r}" for msgid in sorted(singular) if COUNTED.search(msgid)
    ]
    for lang in LANGS:
        with po_path(lang).open("rb") as handle:
            catalog = read_po(handle, locale=lang)
        ids = {message.id for message in catalog if message.id}
        found += [f"{lang}: missing {msgid!r}" for msgid in sorted(template - ids, key=str)]
        for message in catalog:
            if not message.id:
                continue
            msgids, strings = forms(message.id), forms(message.string or "")
            msgid = msgids[0]
            if message.fuzzy:
                found.append(f"{lang}: fuzzy {msgid!r}")
            # Chinese has one plural form and English two (read_po gives a string for each); English may leave
            # them empty, to read the msgid's own singular and plural.
            if lang != "en" and not all(strings):
                found.append(f"{lang}: untranslated {msgid!r}")
                continue
            texts = [text or msgids[min(index, len(msgids) - 1)] for index, text in enumerate(strings)]
            if any(
                sorted(PLACEHOLDER.findall(text)) != sorted(PLACEHOLDER.findall(msgid))
                for text in msgids + tuple(texts)
            ):
                found.append(f"{lang}: placeholders differ in {msgid!r}")
            if any(sorted(TAG.findall(text)) != sorted(TAG.findall(msgid)) for text in msgids + tuple(texts)):
                found.append(f"{lang}: HTML tags differ in {msgid!r}")
            if lang.startswith("zh") and any(FAMILIAR in text for text in texts):
                found.append(f"{lang}: {FAMILIAR} in {msgid!r}: members are addressed as {POLITE} throughout")
        mo = po_path(lang).with_suffix(".mo")
        if not mo.exists() or mo.read_bytes() != compiled(lang):
            found.append(f"{lang}: {mo.name} is stale; run python tools/i18n.py compile")
    return found


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else "check"
    if action == "update":
        update()
    elif action == "compile":
        compile_all()
    else:
        issues = problems()
        print("\n".join(issues) or "catalogs complete")
        sys.exit(1 if issues else 0)
