"""Punch cards: a stamp per qualifying purchase or item, a coupon when full, idempotent with the purchase,
taken back by a refund, and shown in /balance and /card."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from loyalty.program import ProgramError, parse_program
from storage.models import Coupon, PunchCard
from tests.harness import CASHIER_ID, BotHarness


async def _stamps(harness: BotHarness) -> int:
    async with harness.sessions() as session:
        return int((await session.execute(select(func.coalesce(func.sum(PunchCard.stamps), 0)))).scalar_one())


async def _coupons(harness: BotHarness) -> int:
    async with harness.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(Coupon))).scalar_one())


async def test_nine_stamps_then_a_free_coffee(harness: BotHarness) -> None:
    await harness.send(harness.user(1001, "Ann"), "/start")
    cashier = harness.user(CASHIER_ID, "Cass")
    for n in range(8):
        await harness.send(cashier, f"/purchase 1001 20 coffee C-{n}")
    calls = await harness.send(cashier, "/purchase 1001 20 tea T-1")  # another category: no stamp
    assert "stamps" not in harness.texts(calls, 1001)[0]
    update = harness.tg.message_update(cashier, "/purchase 1001 20 coffee C-8")
    [note] = harness.texts(await harness.feed(update), 1001)
    assert "Your Coffee card is full! Coupon <code>" in note and "Coffee card: 0 of 9 stamps" in note
    await harness.feed(update)  # a redelivered update stamps nothing twice
    assert await _stamps(harness) == 0 and await _coupons(harness) == 1
    await harness.send(cashier, "/purchase 1001 20 coffee C-9")
    [balance] = harness.texts(await harness.send(harness.user(1001), "/balance"))
    assert "Coffee card: 1 of 9 stamps" in balance
    [card] = [c for c in await harness.send(harness.user(1001), "/card") if c.method == "sendPhoto"]
    assert "Coffee card: 1 of 9 stamps" in card.params["caption"]
    # The free coffee is a coupon like any other: listed, and taken at the till once.
    [coupons] = harness.texts(await harness.send(harness.user(1001), "/coupons"))
    assert "Free latte" in coupons
    # A refund takes the stamp back; below the minimum no stamp is given either.
    await harness.send(cashier, "/refund C-9")
    assert await _stamps(harness) == 0


async def test_partial_refund_keeps_a_per_purchase_stamp(harness: BotHarness) -> None:
    await harness.send(harness.user(1001, "Ann"), "/start")
    cashier = harness.user(CASHIER_ID, "Cass")
    await harness.send(cashier, "/purchase 1001 20 coffee C-1")
    await harness.send(cashier, "/refund C-1 5")
    assert await _stamps(harness) == 1
    await harness.send(cashier, "/refund C-1")
    assert await _stamps(harness) == 0


def test_cards_must_name_a_reward() -> None:
    with pytest.raises(ProgramError, match="reward 'nope' is not among"):
        parse_program(
            'name = "X"\n[[punch_cards]]\nkey = "c"\nname = "C"\ncategory = "coffee"\nstamps = 9\nreward = "nope"\n'
        )
    with pytest.raises(ProgramError, match="per"):
        parse_program(
            'name = "X"\n[[rewards]]\nkey = "r"\ntitle = "R"\ncost = 1\n[[punch_cards]]\nkey = "c"\n'
            'name = "C"\ncategory = "coffee"\nstamps = 9\nreward = "r"\nper = "visit"\n'
        )
