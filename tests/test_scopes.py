"""Receipts and idempotency keys live in scopes: each named API token's, the unnamed tokens' shared one, the chat's.
Two shops' receipt 0001 are two purchases; the chat's /refund asks which one when a receipt is in several scopes;
a key reused for a different request is a conflict."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.settings import SettingsError, load_settings
from loyalty.exports import PURCHASE_COLUMNS
from storage.models import Member, Purchase
from tests.harness import CASHIER_ID, BotHarness
from tests.test_http import deps_of
from web.server import make_http_app

SHOP_A = "shop-a-token-0123456789"
SHOP_B = "shop-b-token-9876543210"
BARE = "bare-token-00000000000"
A, B = {"Authorization": f"Bearer {SHOP_A}"}, {"Authorization": f"Bearer {SHOP_B}"}


@pytest.fixture
async def api(harness: BotHarness) -> AsyncIterator[TestClient]:
    deps = deps_of(harness, api_tokens=f"shop-a:{SHOP_A},shop-b:{SHOP_B},{BARE}")
    async with TestClient(TestServer(make_http_app(deps, serve_updates=True))) as client:
        yield client


async def _member(harness: BotHarness, user_id: int = 1001) -> Member:
    await harness.send(harness.user(user_id, "Ann"), "/start")
    member = await harness.member(user_id)
    assert member is not None
    return member


def _purchase(member: str, receipt: str = "0001", amount: str = "20.00", **extra: Any) -> dict[str, Any]:
    return {"member": member, "amount": amount, "currency": "CNY", "external_id": receipt, **extra}


async def _purchases(harness: BotHarness) -> list[tuple[str, str, int, int]]:
    async with harness.sessions() as session:
        rows = (await session.execute(select(Purchase).order_by(Purchase.id))).scalars().all()
    return [(p.scope, p.external_id, p.amount_minor, p.refunded_minor) for p in rows]


def test_tokens_are_named_and_bare_ones_share_the_old_scope() -> None:
    settings = load_settings(api_tokens=f"shop-a:{SHOP_A}, {BARE}, till:x:{'y' * 16}", _env_file=None)
    assert settings.api_tokens == {SHOP_A: "shop-a", BARE: "api", f"x:{'y' * 16}": "till"}
    with pytest.raises(SettingsError, match="chat's own scope"):
        load_settings(api_tokens=f"chat:{SHOP_A}", _env_file=None)
    with pytest.raises(SettingsError, match="at least 16"):
        load_settings(api_tokens="shop:short", _env_file=None)


async def test_two_shops_receipts_with_one_number_are_two_purchases(api: TestClient, harness: BotHarness) -> None:
    ann, bob = await _member(harness), await _member(harness, 1002)
    first = await api.post("/api/v1/purchases", json=_purchase(ann.code), headers=A)
    assert first.status == 201
    # Shop B's own 0001, for another member: not a replay of shop A's, and no conflict.
    second = await api.post("/api/v1/purchases", json=_purchase(bob.code, amount="30.00"), headers=B)
    assert second.status == 201, await second.text()
    assert (await second.json())["points"] > 0 and (await second.json())["replayed"] is False
    # Each shop's replay finds its own.
    again = await api.post("/api/v1/purchases", json=_purchase(bob.code, amount="30.00"), headers=B)
    assert again.status == 200 and (await again.json())["purchase_id"] == (await second.json())["purchase_id"]
    assert await _purchases(harness) == [("shop-a", "0001", 2000, 0), ("shop-b", "0001", 3000, 0)]

    # Shop B refunds only its own receipt; shop A's is untouched.
    refund = {"external_id": "0001", "refund_id": "RF-1"}
    response = await api.post("/api/v1/refunds", json=refund, headers=B)
    assert response.status == 201 and (await response.json())["refunded_total"] == "30.00"
    assert await _purchases(harness) == [("shop-a", "0001", 2000, 0), ("shop-b", "0001", 3000, 3000)]
    # Shop A's refund id RF-1 is its own key: not B's replay.
    response = await api.post("/api/v1/refunds", json=refund, headers=A)
    assert response.status == 201 and (await response.json())["refunded_total"] == "20.00"
    # A receipt only another shop has is not found.
    await api.post("/api/v1/purchases", json=_purchase(ann.code, receipt="A-only"), headers=A)
    response = await api.post("/api/v1/refunds", json={"external_id": "A-only", "refund_id": "RF-2"}, headers=B)
    assert response.status == 404 and (await response.json())["error"]["code"] == "purchase_not_found"


async def test_a_receipt_in_the_chat_and_the_api_is_refunded_where_it_was_chosen(
    api: TestClient, harness: BotHarness
) -> None:
    ann = await _member(harness)
    cashier = harness.user(CASHIER_ID, "Cass")
    await harness.send(cashier, f"/purchase {ann.code} 10 coffee 0001")
    assert (await api.post("/api/v1/purchases", json=_purchase(ann.code), headers=A)).status == 201
    # The till refunds its own without asking.
    response = await api.post(
        "/api/v1/refunds", json={"external_id": "0001", "amount": "5.00"}, headers=A | {"Idempotency-Key": "RF-A"}
    )
    assert response.status == 201
    # The chat finds the receipt in two scopes and asks which one (no 500, no guess).
    calls = await harness.send(cashier, "/refund 0001 2.00")
    [question] = [c for c in calls if c.method == "sendMessage" and c.params["chat_id"] == CASHIER_ID]
    assert "Receipt 0001 was recorded more than once" in question.params["text"]
    labels = [row[0]["text"] for row in question.params["reply_markup"]["inline_keyboard"]]
    assert len(labels) == 2 and labels[0].startswith("chat · ") and labels[1].startswith("shop-a · ")
    calls = await harness.press(cashier, labels[0])
    edit = next(c for c in calls if c.method == "editMessageText")
    assert "Refunded CN¥2.00 of receipt 0001" in edit.params["text"]
    assert await _purchases(harness) == [("chat", "0001", 1000, 200), ("shop-a", "0001", 2000, 500)]
    # A second tap on the same question (either button) is the same refund: nothing changes.
    message = harness.tg.find_message(CASHIER_ID, edit.params["message_id"]) or {}
    calls = await harness.feed(
        harness.tg.callback_update(cashier, {**message, "reply_markup": question.params["reply_markup"]}, "rf:2:200")
    )
    assert await _purchases(harness) == [("chat", "0001", 1000, 200), ("shop-a", "0001", 2000, 500)]


async def test_a_key_reused_for_a_different_request_is_a_conflict(api: TestClient, harness: BotHarness) -> None:
    ann = await _member(harness)
    body = _purchase(ann.code, occurred_at="2026-11-21T09:30:00+08:00")
    assert (await api.post("/api/v1/purchases", json=body, headers=A)).status == 201
    moved = {**body, "occurred_at": "2026-11-21T10:30:00+08:00"}
    response = await api.post("/api/v1/purchases", json=moved, headers=A)
    assert response.status == 409 and (await response.json())["error"]["code"] == "idempotency_conflict"
    same_moment = {**body, "occurred_at": "2026-11-21T01:30:00+00:00"}  # the same time, another offset
    assert (await api.post("/api/v1/purchases", json=same_moment, headers=A)).status == 200

    refund = {"external_id": "0001", "amount": "5.00", "refund_id": "RF-1"}
    assert (await api.post("/api/v1/refunds", json=refund, headers=A)).status == 201
    response = await api.post("/api/v1/refunds", json={**refund, "amount": "6.00"}, headers=A)
    assert response.status == 409 and (await response.json())["error"]["code"] == "idempotency_conflict"
    assert (await api.post("/api/v1/refunds", json=refund, headers=A)).status == 200
    assert await _purchases(harness) == [("shop-a", "0001", 2000, 500)]


def test_the_export_shows_each_purchase_scope() -> None:
    assert PURCHASE_COLUMNS[:4] == ["id", "member_id", "scope", "source"]
