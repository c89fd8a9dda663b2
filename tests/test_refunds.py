"""Refunds: full and partial, no rounding drift, debt repaid by the next earnings, replays and bad input."""

from __future__ import annotations

from sqlalchemy import func, select

from storage.models import LedgerEntry, Member, Refund
from tests.harness import ADMIN_ID, CASHIER_ID, BotHarness


async def _state(harness: BotHarness) -> tuple[int, int, int]:
    async with harness.sessions() as session:
        points = (await session.execute(select(Member.points).where(Member.telegram_id == 1001))).scalar_one()
        total = (await session.execute(select(func.sum(LedgerEntry.points)))).scalar_one()
        remaining = (await session.execute(select(func.sum(LedgerEntry.remaining)))).scalar_one()
    assert total == points and remaining == max(points, 0), "ledger invariants"
    return int(points), int(total), int(remaining)


async def _setup(harness: BotHarness) -> tuple[dict, dict]:
    await harness.send(harness.user(1001, "Ann"), "/start")  # 50 welcome points
    cashier = harness.user(CASHIER_ID, "Cass")
    await harness.send(cashier, "/purchase 1001 100 tea R-1")  # +100 → 150
    return cashier, harness.user(1001)


async def test_partial_refunds_add_up_to_a_full_one(harness: BotHarness) -> None:
    cashier, _ann = await _setup(harness)
    reply = harness.texts(await harness.send(cashier, "/refund R-1 33.33"), CASHIER_ID)[0]
    assert "Refunded CN¥33.33 of receipt R-1: −33 points" in reply and "balance is 117" in reply
    await harness.send(cashier, "/refund R-1 33.33")
    reply = harness.texts(await harness.send(cashier, "/refund R-1"), CASHIER_ID)[0]  # the rest: 33.34
    assert "CN¥33.34" in reply and "−34 points" in reply
    assert (await _state(harness))[0] == 50
    assert "already fully refunded" in harness.texts(await harness.send(cashier, "/refund R-1"), CASHIER_ID)[0]
    assert (await _state(harness))[0] == 50


async def test_spent_points_become_a_debt_the_next_purchase_repays(harness: BotHarness) -> None:
    cashier, _ann = await _setup(harness)
    await harness.send(harness.user(ADMIN_ID, "Boss"), "/adjust 1001 -140 spent it")  # 10 left
    reply = harness.texts(await harness.send(cashier, "/refund R-1"), CASHIER_ID)[0]
    assert "−100 points" in reply and "balance is -90" in reply
    assert await _state(harness) == (-90, -90, 0)
    calls = await harness.send(cashier, "/purchase 1001 120 tea R-2")
    assert "balance 30" in harness.texts(calls, CASHIER_ID)[0]
    assert await _state(harness) == (30, 30, 30)


async def test_refund_replays_and_bad_input_change_nothing(harness: BotHarness) -> None:
    cashier, ann = await _setup(harness)
    update = harness.tg.message_update(cashier, "/refund R-1 10")
    await harness.feed(update)
    assert "already made" in harness.texts(await harness.feed(update))[0]
    assert (await _state(harness))[0] == 140
    for command, expected in (
        ("/refund", "Usage"),
        ("/refund <x>", "Usage"),
        ("/refund R-404", "No purchase"),
        ("/refund R-1 0", "more than zero"),
        ("/refund R-1 abc", "a number like"),
        ("/refund R-1 1.234", "decimal places"),
        ("/refund R-1 90.01", "Only CN¥90.00"),
    ):
        assert expected in harness.texts(await harness.send(cashier, command), CASHIER_ID)[0], command
    refused = harness.texts(await harness.send(ann, "/refund R-1"))
    assert refused == ["Sorry, that command is only for the shop's staff."]
    assert (await _state(harness))[0] == 140
    async with harness.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Refund))).scalar_one() == 1
