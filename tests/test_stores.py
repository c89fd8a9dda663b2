"""Stores: a chain of shops on one program. Purchases, refunds and coupons record their store (the cashier's, the
API token's, or given); a cashier refunds only their store's purchases; promotions and rewards limited to stores;
a store's own clock; the support desk's store; bad store keys refused, changing nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from loyalty.program import EXAMPLE_PROGRAM, Program, ProgramError, parse_program
from storage.database import begin_write
from storage.models import AuditLog, Coupon, Purchase, Refund, StaffRole, StaffStore, Thread
from tests.harness import ADMIN_ID, CASHIER_ID, SUPPORT_CHAT_ID, BotHarness
from tests.test_http import deps_of
from tests.test_miniapp import APP, auth
from web.server import make_http_app

DOWNTOWN_CASHIER = 9010
STORES = """
[[stores]]
key = "airport"
name = "Airport"
name_zh_hans = "机场店"
name_zh_hant = "機場店"
tokens = ["airport-till"]

[[stores]]
key = "downtown"
name = "Downtown"
timezone = "Asia/Tokyo"

[[promotions]]
name = "Airport double"
multiplier = "2"
stores = ["airport"]

[[promotions]]
name = "Tokyo mornings"
bonus = 7
start_time = "09:00"
end_time = "10:00"
stores = ["downtown"]

[[rewards]]
key = "cake"
title = "Downtown cake"
cost = 10
stores = ["downtown"]
"""
TILL_TOKEN = "airport-till-token-0123456789"


@pytest.fixture
def program() -> Program:
    return parse_program(EXAMPLE_PROGRAM.read_text() + STORES)


async def _chain(harness: BotHarness) -> None:
    """Ann joins; the settings' cashier works at the airport, a second cashier (given the role in the database)
    downtown."""
    await harness.send(harness.user(1001, "Ann"), "/start")
    await harness.send(harness.user(DOWNTOWN_CASHIER, "Dora"), "/start")
    async with harness.sessions() as session:
        await begin_write(session)
        session.add(StaffRole(telegram_id=DOWNTOWN_CASHIER, role="cashier"))
        await session.commit()
    boss = harness.user(ADMIN_ID, "Boss")
    done = harness.texts(await harness.send(boss, f"/staff store {CASHIER_ID} airport"), ADMIN_ID)[0]
    assert "works at Airport now" in done
    await harness.send(boss, f"/staff store {DOWNTOWN_CASHIER} downtown")


async def _purchase(harness: BotHarness, receipt: str) -> Purchase:
    async with harness.sessions() as session:
        return (await session.execute(select(Purchase).where(Purchase.external_id == receipt))).scalar_one()


def test_the_program_refuses_stores_it_does_not_name() -> None:
    base = EXAMPLE_PROGRAM.read_text()
    for extra, reason in (
        ('[[promotions]]\nname = "X"\nbonus = 5\nstores = ["mars"]\n', "stores ['mars'] are not among [[stores]] keys"),
        ('[[stores]]\nkey = "a"\nname = "A"\n[[stores]]\nkey = "a"\nname = "B"\n', "store keys must be unique"),
        ('[[stores]]\nkey = "a"\nname = "A"\ntimezone = "Mars/Base"\n', "unknown time zone 'Mars/Base'"),
        (
            '[[stores]]\nkey = "a"\nname = "A"\ntokens = ["t"]\n[[stores]]\nkey = "b"\nname = "B"\ntokens = ["t"]\n',
            "an API token belongs to one store at most",
        ),
    ):
        with pytest.raises(ProgramError, match=reason.replace("[", r"\[").replace("]", r"\]")):
            parse_program(base + extra)


async def test_purchases_record_the_cashiers_store_and_store_promotions_apply_there(harness: BotHarness) -> None:
    await _chain(harness)
    listed = harness.texts(await harness.send(harness.user(ADMIN_ID, "Boss"), "/staff list"), ADMIN_ID)[0]
    assert "works at Airport" in listed and "works at Downtown" in listed
    at_airport = await harness.send(harness.user(CASHIER_ID, "Cass"), "/purchase 1001 100 tea R-1")
    assert "+200 points" in harness.texts(at_airport, CASHIER_ID)[0]  # double points at the airport
    at_downtown = await harness.send(harness.user(DOWNTOWN_CASHIER, "Dora"), "/purchase 1001 100 tea R-2")
    assert "+100 points" in harness.texts(at_downtown, DOWNTOWN_CASHIER)[0]
    assert (await _purchase(harness, "R-1")).store == "airport"
    assert (await _purchase(harness, "R-2")).store == "downtown"
    async with harness.sessions() as session:
        audited = [a.detail for a in (await session.execute(select(AuditLog))).scalars() if a.action == "staff_store"]
    assert audited == [f"{CASHIER_ID} airport", f"{DOWNTOWN_CASHIER} downtown"]


async def test_a_store_promotion_reads_the_stores_own_clock(harness: BotHarness) -> None:
    await _chain(harness)
    # 00:30 UTC is 09:30 in Tokyo (downtown's zone) and 08:30 in Shanghai (the program's).
    harness.clock.now = datetime(2026, 11, 23, 0, 30, tzinfo=UTC)
    calls = await harness.send(harness.user(DOWNTOWN_CASHIER, "Dora"), "/purchase 1001 10 tea R-3")
    assert "+17 points" in harness.texts(calls, DOWNTOWN_CASHIER)[0]


async def test_a_cashier_refunds_only_their_stores_purchases(harness: BotHarness) -> None:
    await _chain(harness)
    await harness.send(harness.user(CASHIER_ID, "Cass"), "/purchase 1001 100 tea R-1")
    before = await harness.member(1001)
    refused = harness.texts(await harness.send(harness.user(DOWNTOWN_CASHIER, "Dora"), "/refund R-1"))[0]
    assert refused == "This purchase was made at Airport: its staff or an admin can refund it. Nothing was changed."
    after = await harness.member(1001)
    assert before is not None and after is not None and after.points == before.points
    assert (await _purchase(harness, "R-1")).refunded_minor == 0
    done = harness.texts(await harness.send(harness.user(ADMIN_ID, "Boss"), "/refund R-1 10"), ADMIN_ID)[0]
    assert "Refunded" in done  # an admin refunds any store's
    done = harness.texts(await harness.send(harness.user(CASHIER_ID, "Cass"), "/refund R-1 10"), CASHIER_ID)[0]
    assert "Refunded" in done
    async with harness.sessions() as session:
        stores = [r.store for r in (await session.execute(select(Refund).order_by(Refund.id))).scalars()]
    assert stores == [None, "airport"]  # the admin works at no store; the cashier at the airport


async def test_a_reward_limited_to_a_store_is_accepted_only_there(harness: BotHarness) -> None:
    await _chain(harness)
    ann = harness.user(1001, "Ann")
    await harness.send(harness.user(ADMIN_ID, "Boss"), "/adjust 1001 +100 gift")
    listing = harness.texts(await harness.send(ann, "/rewards"))[0]
    assert "Downtown cake</b> — 10 points · only at Downtown" in listing
    await harness.press(ann, "Redeem: Downtown cake")
    await harness.press(ann, "✅ Confirm")
    async with harness.sessions() as session:
        coupon = (await session.execute(select(Coupon))).scalar_one()
    refused = harness.texts(await harness.send(harness.user(CASHIER_ID, "Cass"), f"/redeem {coupon.code}"))[0]
    assert refused == "This coupon is only accepted at Downtown. Nothing was changed."
    accepted = harness.texts(await harness.send(harness.user(DOWNTOWN_CASHIER, "Dora"), f"/redeem {coupon.code}"))
    assert "accepted" in accepted[0]
    async with harness.sessions() as session:
        used = (await session.execute(select(Coupon))).scalar_one()
    assert used.used_store == "downtown" and used.used_by == DOWNTOWN_CASHIER


async def test_the_api_records_the_tokens_store_or_the_one_given_and_refuses_unknown_ones(harness: BotHarness) -> None:
    await _chain(harness)
    member = await harness.member(1001)
    assert member is not None
    services = deps_of(harness, api_tokens=frozenset({f"airport-till:{TILL_TOKEN}", "web-shop:web-token-0123456789"}))
    async with TestClient(TestServer(make_http_app(services, serve_updates=True))) as client:
        till = {"Authorization": f"Bearer {TILL_TOKEN}"}
        body = {"member": member.code, "amount": "10", "currency": "CNY", "external_id": "A-1"}
        made = await client.post("/api/v1/purchases", json=body, headers=till)
        assert made.status == 201 and (await made.json())["store"] == "airport"
        shop = {"Authorization": "Bearer web-token-0123456789"}
        made = await client.post("/api/v1/purchases", json=body | {"external_id": "W-1"}, headers=shop)
        assert made.status == 201 and (await made.json())["store"] is None  # the web shop is no store
        given = body | {"external_id": "W-2", "store": "downtown"}
        made = await client.post("/api/v1/purchases", json=given, headers=shop)
        assert made.status == 201 and (await made.json())["store"] == "downtown"
        bad = await client.post("/api/v1/purchases", json=body | {"external_id": "W-3", "store": "mars"}, headers=shop)
        assert bad.status == 422
        error = (await bad.json())["error"]
        assert error["code"] == "unknown_store" and error["stores"] == ["airport", "downtown"]
    async with harness.sessions() as session:
        receipts = [p.external_id for p in (await session.execute(select(Purchase))).scalars()]
    assert "W-3" not in receipts


async def test_the_till_records_the_cashiers_store_and_refuses_another_stores_refund(harness: BotHarness) -> None:
    await _chain(harness)
    member = await harness.member(1001)
    assert member is not None
    services = deps_of(
        harness,
        webapp_url=APP,
        cashier_ids=harness.services.settings.cashier_ids,
        admin_ids=harness.services.settings.admin_ids,
    )
    async with TestClient(TestServer(make_http_app(services, serve_updates=True))) as client:
        till = await (await client.get("/app/view/till", headers=auth(harness, DOWNTOWN_CASHIER))).text()
        assert '<p class="muted small" id="till-store">🏬 Downtown</p>' in till
        body = {"member": member.code, "amount": "10", "receipt": "T-1", "key": "till-0123456789"}
        made = await client.post("/app/api/till/purchases", json=body, headers=auth(harness, DOWNTOWN_CASHIER))
        assert made.status == 201, await made.text()
        assert (await _purchase(harness, "T-1")).store == "downtown"
        refund = {"receipt": "T-1", "key": "refund-0123456789"}
        refused = await client.post("/app/api/till/refunds", json=refund, headers=auth(harness, CASHIER_ID))
        assert refused.status == 409
        assert (await refused.json())["error"]["message"] == (
            "This purchase was made at Downtown: its staff or an admin can refund it. Nothing was changed."
        )
        assert (await _purchase(harness, "T-1")).refunded_minor == 0


async def test_bad_store_commands_are_explained_and_change_nothing(harness: BotHarness) -> None:
    await _chain(harness)
    boss = harness.user(ADMIN_ID, "Boss")
    reply = harness.texts(await harness.send(boss, f"/staff store {CASHIER_ID} mars"), ADMIN_ID)[0]
    assert reply == "There is no store mars. The stores are: airport (Airport), downtown (Downtown)."
    reply = harness.texts(await harness.send(boss, "/staff store 1001 airport"), ADMIN_ID)[0]
    assert "has no staff role" in reply
    reply = harness.texts(await harness.send(boss, "/staff store @nobody airport"), ADMIN_ID)[0]
    assert "No member or Telegram id found" in reply
    async with harness.sessions() as session:
        audited = [a for a in (await session.execute(select(AuditLog))).scalars() if a.action == "staff_store"]
    assert len(audited) == 2  # only _chain's two


async def test_the_support_desk_shows_and_tags_the_store(harness: BotHarness) -> None:
    await _chain(harness)
    cashier = harness.user(CASHIER_ID, "Cass")
    await harness.send(cashier, "/purchase 1001 10 tea R-1")
    await harness.send(cashier, "/purchase 1001 10 tea R-2")
    await harness.send(harness.user(DOWNTOWN_CASHIER, "Dora"), "/purchase 1001 10 tea R-3")
    ann = harness.user(1001, "Ann")
    await harness.send(ann, "/feedback")
    calls = await harness.send(ann, "The airport latte was cold")
    card = next(c for c in calls if c.method == "sendMessage" and c.params["chat_id"] == SUPPORT_CHAT_ID)
    assert "Buys most at: Airport" in card.params["text"]
    services = deps_of(harness, webapp_url=APP, admin_ids=harness.services.settings.admin_ids)
    async with TestClient(TestServer(make_http_app(services, serve_updates=True))) as client:
        member = await harness.member(1001)
        assert member is not None
        file = await client.get(f"/app/api/console/member?ref={member.code}", headers=auth(harness, ADMIN_ID))
        assert (await file.json())["usual_store"] == "Airport"
    async with harness.sessions() as session:
        thread = (await session.execute(select(Thread))).scalar_one()
    boss = harness.user(ADMIN_ID, "Boss")
    tagged = harness.texts(await harness.send(boss, f"/thread {thread.id} store airport"), ADMIN_ID)[0]
    assert tagged == f"Thread #{thread.id} is about Airport now."
    shown = harness.texts(await harness.send(boss, f"/thread {thread.id}"), ADMIN_ID)[0]
    assert "Thread about: Airport" in shown
    refused = harness.texts(await harness.send(boss, f"/thread {thread.id} store mars"), ADMIN_ID)[0]
    assert refused.startswith("There is no store mars.")
    async with harness.sessions() as session:
        assert (await session.get(Thread, thread.id)).store == "airport"  # type: ignore[union-attr]


async def test_store_refusals_speak_chinese(harness: BotHarness) -> None:
    await _chain(harness)
    await harness.send(harness.user(CASHIER_ID, "Cass"), "/purchase 1001 100 tea R-1")
    dora = harness.user(DOWNTOWN_CASHIER, "Dora", language_code="zh-hans")
    await harness.send(dora, "/language")
    await harness.press(dora, "简体中文")
    refused = harness.texts(await harness.send(dora, "/refund R-1"))[0]
    assert "机场店" in refused and "未做任何更改" in refused


async def test_the_console_assigns_staff_to_stores(harness: BotHarness) -> None:
    await _chain(harness)
    services = deps_of(harness, webapp_url=APP, admin_ids=harness.services.settings.admin_ids)
    admin = auth(harness, ADMIN_ID, first_name="Ada")
    async with TestClient(TestServer(make_http_app(services, serve_updates=True))) as client:
        staff = await (await client.get("/app/api/console/staff", headers=admin)).json()
        assert [s["key"] for s in staff["stores"]] == ["airport", "downtown"]
        assert next(s for s in staff["staff"] if s["telegram_id"] == DOWNTOWN_CASHIER)["store"] == "downtown"
        moved = await client.post(
            "/app/api/console/staff/store", json={"ref": str(DOWNTOWN_CASHIER), "store": "airport"}, headers=admin
        )
        assert moved.status == 200 and "works at Airport now" in (await moved.json())["message"]
        page = await (await client.get("/app/view/console/staff", headers=admin)).text()
        assert '<option value="airport" selected>Airport</option>' in page
        unknown = await client.post(
            "/app/api/console/staff/store", json={"ref": str(DOWNTOWN_CASHIER), "store": "mars"}, headers=admin
        )
        assert unknown.status == 400 and "There is no store mars" in (await unknown.json())["error"]["message"]
        member = await client.post(
            "/app/api/console/staff/store",
            json={"ref": str(DOWNTOWN_CASHIER), "store": ""},
            headers=auth(harness, 1001),
        )
        assert member.status == 403
        cleared = await client.post(
            "/app/api/console/staff/store", json={"ref": str(DOWNTOWN_CASHIER), "store": ""}, headers=admin
        )
        assert cleared.status == 200 and "no particular store" in (await cleared.json())["message"]
    async with harness.sessions() as session:
        assert await session.get(StaffStore, DOWNTOWN_CASHIER) is None


async def test_the_figures_per_store_in_stats_the_console_and_the_report(
    harness: BotHarness, database_url: str
) -> None:
    from loyalty import metrics
    from loyalty.revisions import ensure_first_revision
    from tests.test_dashboard import report

    await _chain(harness)
    cashier, dora = harness.user(CASHIER_ID, "Cass"), harness.user(DOWNTOWN_CASHIER, "Dora")
    await harness.send(harness.user(1002, "Bob"), "/start")
    await harness.send(cashier, "/purchase 1001 100 tea R-1")
    await harness.send(cashier, "/purchase 1002 30 tea R-2")
    await harness.send(cashier, "/purchase 1002 50 tea R-3")
    await harness.send(cashier, "/refund R-3 20")
    await harness.send(dora, "/purchase 1001 10 tea R-4")
    harness.clock.advance(minutes=1)
    # What a plain computation says, store by store: buyers, purchases, sales net of refunds.
    async with harness.sessions() as session:
        bought = list((await session.execute(select(Purchase))).scalars())
    plain = {
        key: (
            len({p.member_id for p in bought if p.store == key}),
            sum(1 for p in bought if p.store == key),
            sum(p.amount_minor - p.refunded_minor for p in bought if p.store == key),
        )
        for key in ("airport", "downtown")
    }
    assert plain == {"airport": (2, 3, 16000), "downtown": (1, 1, 1000)}
    program = harness.services.program
    period = metrics.parse_period("30d", harness.clock(), program.tz)
    assert period is not None
    async with harness.sessions() as session:
        computed = await metrics.by_store(session, period, ["airport", "downtown"])
    assert {f.store: (f.buyers, f.purchases, f.sales_minor) for f in computed} == plain

    boss = harness.user(ADMIN_ID, "Boss")
    [card, *_] = harness.texts(await harness.send(boss, "/stats 30d"), ADMIN_ID)
    assert "🏬 By store" in card and "Airport: 2 · 3 · CN¥160.00 · 0 · —" in card
    assert "Downtown: 1 · 1 · CN¥10.00 · 0 · —" in card
    [one] = harness.texts(await harness.send(boss, "/stats 30d airport"), ADMIN_ID)
    assert one.startswith("🏬 <b>Airport</b>") and "Downtown" not in one
    [refused] = harness.texts(await harness.send(boss, "/stats 30d mars"), ADMIN_ID)
    assert refused.startswith("There is no store mars.")

    services = deps_of(harness, webapp_url=APP, admin_ids=harness.services.settings.admin_ids)
    admin = auth(harness, ADMIN_ID, first_name="Ada")
    async with TestClient(TestServer(make_http_app(services, serve_updates=True))) as client:
        everything = await (await client.get("/app/api/console/dashboard?period=30d", headers=admin)).json()
        assert [r["key"] for r in everything["store_rows"]] == ["airport", "downtown"] and everything["charts"]
        airport = await (await client.get("/app/api/console/dashboard?period=30d&store=airport", headers=admin)).json()
        assert [r["key"] for r in airport["store_rows"]] == ["airport"] and not airport["charts"]
        assert {c["key"]: c["value"] for c in airport["cards"]}["store-sales"] == "CN¥160.00"
        page = await (await client.get("/app/view/console/dashboard?period=30d&store=airport", headers=admin)).text()
        assert 'data-store-row="airport"' in page and 'data-store-row="downtown"' not in page
        mars = await client.get("/app/api/console/dashboard?period=30d&store=mars", headers=admin)
        assert mars.status == 400 and "There is no store mars" in (await mars.json())["error"]["message"]

    async with harness.sessions() as session:  # the report reads the revision in force, as every process does
        await ensure_first_revision(session, program, harness.clock())
    out = json.loads(
        await report(database_url, harness.clock(), "--period", "30d", "--format", "json", "--store", "airport")
    )
    assert out["store"] == "airport"
    values = {(f["section"], f["figure"]): f["value"] for f in out["figures"]}
    assert values[("store: Airport", "buyers")] == 2 and values[("store: Airport", "purchases")] == 3
    assert values[("store: Airport", "sales (CNY, net of refunds)")] == 160.0
    assert not [key for key in values if key[0] != "store: Airport"]
    full = json.loads(await report(database_url, harness.clock(), "--period", "30d", "--format", "json"))
    assert {f["section"] for f in full["figures"]} >= {"store: Airport", "store: Downtown", "members"}


async def test_the_editors_preview_earns_at_the_store_chosen(harness: BotHarness) -> None:
    from loyalty.revisions import ensure_first_revision

    async with harness.sessions() as session:
        await ensure_first_revision(session, harness.services.program, harness.clock())
    services = deps_of(harness, webapp_url=APP, admin_ids=harness.services.settings.admin_ids)
    admin = auth(harness, ADMIN_ID, first_name="Ada")
    sample = {"amount": "10", "category": "tea", "items": 1, "vip": False, "at": "2026-11-22T12:00"}
    body = {"section": "welcome", "value": {"bonus": 50}}
    async with TestClient(TestServer(make_http_app(services, serve_updates=True))) as client:
        page = await (await client.get("/app/view/console/program?section=earn", headers=admin)).text()
        assert '<option value="airport">Airport</option>' in page
        points = {}
        for store in (None, "airport", "downtown"):
            asked = body | {"sample": sample | {"store": store}}
            answer = await client.post("/app/api/console/program/preview", json=asked, headers=admin)
            assert answer.status == 200, await answer.text()
            points[store] = (await answer.json())["now"]["points"]
    assert points == {None: 10, "airport": 20, "downtown": 10}  # double points at the airport only


async def test_the_app_tells_members_where_a_reward_is_accepted(harness: BotHarness) -> None:
    await _chain(harness)
    services = deps_of(harness, webapp_url=APP)
    async with TestClient(TestServer(make_http_app(services, serve_updates=True))) as client:
        rewards = await (await client.get("/app/api/rewards", headers=auth(harness, 1001))).json()
    where = {r["title"]: r["stores"] for r in rewards["rewards"]}
    assert where["Downtown cake"] == "Downtown" and where["Free latte"] is None
