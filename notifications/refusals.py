"""What staff are told when the program refuses what they typed: one wording for the chat and the Mini App's till."""

from __future__ import annotations

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext

from loyalty.program import Program
from loyalty.purchases import MAX_ITEMS, AmountError, AmountProblem, InputProblem, PurchaseInputError
from notifications.texts import money, reward_stores


def own_account_refused() -> str:
    """What a staff member is told who tried to record on their own member account."""
    return _(
        "That is your own member account: a colleague has to do this for you. Nothing was changed, and the "
        "attempt is in the audit log."
    )


def input_problem(error: PurchaseInputError, program: Program, locale: str) -> str:
    if error.problem is InputProblem.ITEMS:
        return _("The number of items must be a whole number from 1 to {max}.").format(max=MAX_ITEMS)
    if error.problem is InputProblem.CATEGORY:
        return _("The category may use letters, digits, - and _ (up to 32).")
    if error.problem is InputProblem.UNKNOWN_CATEGORY:
        known = ", ".join(sorted(program.categories()))
        if error.suggestion:
            return _("Unknown category. Did you mean {suggestion}? The categories are: {known}.").format(
                suggestion=error.suggestion, known=known
            )
        return _("Unknown category. The categories are: {known}.").format(known=known)
    if error.problem is InputProblem.RECEIPT:
        return _("The receipt number may use letters, digits and . / : # - _ (up to 64).")
    assert error.amount is not None  # the chat gives no time, so the only other problem is the amount
    return amount_problem(error.amount, program, locale)


def amount_problem(error: AmountError, program: Program, locale: str) -> str:
    if error.problem is AmountProblem.NOT_POSITIVE:
        return _("The amount must be more than zero.")
    if error.problem is AmountProblem.DECIMAL_COMMA:
        return _("Is that a decimal comma? Please write the amount with a dot, like 12.50.")
    if error.problem is AmountProblem.TOO_PRECISE:
        return ngettext(
            "The amount can have at most {digits} decimal place.",
            "The amount can have at most {digits} decimal places.",
            program.minor_digits,
        ).format(digits=program.minor_digits)
    if error.problem is AmountProblem.TOO_LARGE and error.limit is not None:
        return _("The amount is above the limit of {limit} for one purchase. Please check it.").format(
            limit=money(error.limit, program.currency, locale)
        )
    return _("The amount must be a number like 12.50.")


def other_store_refused(program: Program, store: str | None, language: str) -> str:
    """A cashier refunding another store's purchase."""
    rule = program.store(store)
    return _("This purchase was made at {store}: its staff or an admin can refund it. Nothing was changed.").format(
        store=rule.name_in(language) if rule else store or "?"
    )


def wrong_store_refused(program: Program, reward_key: str | None, language: str) -> str:
    """A coupon whose reward the program limits to other stores."""
    where = reward_stores(program, reward_key, language) or "?"
    return _("This coupon is only accepted at {stores}. Nothing was changed.").format(stores=where)


def unknown_store(program: Program, key: str, language: str) -> str:
    """A store key the program does not name, with the ones it does."""
    known = ", ".join(f"{store.key} ({store.name_in(language)})" for store in program.stores)
    return _("There is no store {store}. The stores are: {known}.").format(store=key[:32], known=known or "—")
