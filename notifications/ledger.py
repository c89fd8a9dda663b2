"""How a ledger entry reads to the member, in their language: the chat's /history and the Mini App's history."""

from __future__ import annotations

import html

from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.i18n.lazy_proxy import LazyProxy

from loyalty.account import PurchasePromotion
from loyalty.campaigns import promotion_name
from loyalty.ledger import Kind
from loyalty.program import Program
from storage.models import LedgerEntry

KIND_LABELS: dict[str, LazyProxy] = {
    Kind.WELCOME: __("Welcome bonus"),
    Kind.PURCHASE: __("Purchase"),
    Kind.ADJUST: __("Adjustment"),
    Kind.SPEND: __("Redeemed"),
    Kind.EXPIRE: __("Expired"),
    Kind.REFUND: __("Refund"),
    Kind.REFERRAL: __("Referral bonus"),
    Kind.SHARE: __("Shared content approved"),
    Kind.PROFILE: __("Profile completed"),
    Kind.BIRTHDAY: __("Birthday gift"),
    Kind.WINBACK: __("Welcome-back bonus"),
    Kind.VIP: __("VIP monthly gift"),
    Kind.CHECKIN: __("Daily check-in"),
    Kind.MAKEUP: __("Make-up check-in"),
    Kind.MISSION: __("Mission completed"),
}
MISSION_REASON = "mission "  # loyalty.missions writes "mission <key>" on a claw-back
REFUND_REASON = "refund "  # loyalty.refunds writes "refund <receipt>"


def entry_label(
    entry: LedgerEntry, program: Program, promotion: PurchasePromotion | None = None, *, escape: bool = True
) -> str:
    """What the entry was, in the current locale; ``promotion``: the promotion the purchase earned with.
    ``escape``: for a Telegram HTML message (a web template escapes by itself)."""
    quote = html.escape if escape else str
    label = str(KIND_LABELS.get(entry.kind) or _("Other"))
    if promotion is not None:  # "Purchase (×2 Double Afternoons)", the promotion in the member's language
        language = get_i18n().current_locale.replace("_", "-")
        named = quote(promotion_name(program, promotion.name, promotion.campaign, language))
        detail = promotion.detail
        return _("{label} ({detail})").format(label=label, detail=f"{detail} {named}".strip())
    if entry.kind == Kind.REFUND and entry.reason and entry.reason.startswith(REFUND_REASON):
        return _("Refund of receipt {receipt}").format(receipt=quote(entry.reason[len(REFUND_REASON) :]))
    if entry.kind == Kind.REFUND and entry.reason and entry.reason.startswith(MISSION_REASON):
        return _("Mission reward taken back (a purchase was refunded)")
    if entry.kind == Kind.MISSION and entry.reason:  # the mission's key: its name in the member's language
        language = get_i18n().current_locale.replace("_", "-")
        rule = next((m for m in program.missions if m.key == entry.reason), None)
        name = rule.name_in(language) if rule is not None else entry.reason
        return _("{label} ({detail})").format(label=label, detail=quote(name))
    if entry.kind == Kind.REFERRAL and entry.points < 0:
        return _("Referral bonus taken back (the friend's purchase was refunded)")
    if entry.reason and entry.kind in (Kind.ADJUST, Kind.SPEND):  # the staff's reason; the reward's title
        return _("{label} ({detail})").format(label=label, detail=quote(entry.reason))
    return label
