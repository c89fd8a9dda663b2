"""The merchant console over HTTP: admins only, checked on the server; search by every field; a member's file that
agrees with the chat; adjustments, birthdays and staff roles through the chat's own functions, audited, once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from loyalty import profile
from storage.models import AuditLog, LedgerEntry, Member, StaffInvite, StaffRole
from tests.harness import ADMIN_ID, CASHIER_ID, SUPPORT_ID, BotHarness
from tests.test_miniapp import MEMBER_ID, auth, join, services_with_app
from web.server import make_http_app

ADMIN = {"first_name": "Ada"}


@pytest.fixture
async def app(harness: BotHarness) -> AsyncIterator[TestClient]:
    server = TestServer(make_http_app(services_with_app(harness), serve_updates=True))
    async with TestClient(server) as client:
        yield client


async def state(harness: BotHarness) -> tuple[int, ...]:
    async with harness.sessions() as session:
        counted = [
            int((await session.execute(select(func.count()).select_from(model))).scalar_one())
            for model in (LedgerEntry, AuditLog, StaffRole, StaffInvite)
        ]
        points = (await session.execute(select(func.coalesce(func.sum(Member.points), 0)))).scalar_one()
        born = (await session.execute(select(func.count()).where(Member.birth_month.is_not(None)))).scalar_one()  # type: ignore[union-attr]
    return (*counted, int(points), int(born))


async def audit_actions(harness: BotHarness) -> list[str]:
    async with harness.sessions() as session:
        return [row.action for row in (await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars()]  # type: ignore[arg-type]


async def test_search_finds_members_by_name_code_username_and_phone(app: TestClient, harness: BotHarness) -> None:
    ann = await join(harness)
    await harness.send(harness.user(1002, "Annabel", username="Bella_Q"), "/start")
    await harness.send(harness.user(1003, "Bob"), "/start")
    async with harness.sessions() as session:
        await profile.set_phone(session, harness.services.program, ann.id or 0, "+86 138 0000 1234", harness.clock())
    headers = auth(harness, ADMIN_ID, **ADMIN)

    async def names(query: str) -> list[str]:
        response = await app.get("/app/api/console/members", params={"q": query}, headers=headers)
        assert response.status == 200, await response.text()
        return [found["first_name"] for found in (await response.json())["results"]]

    assert await names("ann") == ["Ann", "Annabel"]  # a prefix of the name, any case
    assert await names("ANNA") == ["Annabel"]
    assert await names(ann.code.lower()) == ["Ann"]  # the exact code
    assert await names("@bella") == ["Annabel"]  # a prefix of the username
    assert await names("bella_q") == ["Annabel"]
    assert await names("+86 138") == ["Ann"]  # a prefix of the phone, with its country code
    assert await names("8613800001234") == ["Ann"]
    assert await names("nobody") == []
    assert await names("100%") == []  # LIKE's wildcards are text
    view = await app.get("/app/view/console/members", params={"q": "ann"}, headers=headers)
    assert view.status == 200 and "Annabel" in await view.text()


async def test_search_is_bounded(app: TestClient, harness: BotHarness) -> None:
    for n in range(23):
        await harness.send(harness.user(2000 + n, f"Max{n:02d}"), "/start")
    response = await app.get("/app/api/console/members?q=max", headers=auth(harness, ADMIN_ID, **ADMIN))
    found = await response.json()
    assert len(found["results"]) == found["limit"] == 20


async def test_the_member_page_shows_what_the_chats_adjust_changed(app: TestClient, harness: BotHarness) -> None:
    member = await join(harness)
    await harness.purchase(member.code, "50", "R-1")
    await harness.send(harness.user(ADMIN_ID, "Ada"), f"/adjust {member.code} +25 Sorry for the wait")
    response = await app.get(f"/app/api/console/member?ref={member.code}", headers=auth(harness, ADMIN_ID, **ADMIN))
    assert response.status == 200, await response.text()
    page = await response.json()
    refreshed = await harness.member(MEMBER_ID)
    assert refreshed is not None and page["points"] == refreshed.points
    assert page["ledger"][0]["points"] == 25 and "Sorry for the wait" in page["ledger"][0]["label"]
    assert sum(lot["remaining"] for lot in page["lots"]) == page["points"]
    [purchase] = page["purchases"]
    assert purchase["receipt"] == "R-1" and purchase["refundable"] is True
    assert page["role"] == "member" and page["staff"] is False
    view = await app.get(f"/app/view/console/member?ref={member.code}", headers=auth(harness, ADMIN_ID, **ADMIN))
    assert view.status == 200 and "Sorry for the wait" in await view.text()


async def menu_of(harness: BotHarness, since: int, chat_id: int) -> list[str]:
    """The commands last set for ``chat_id``'s own menu since call ``since``, once set (the console sets it after
    answering)."""
    for _ in range(250):
        scope = {"type": "chat", "chat_id": chat_id}
        calls = [c for c in harness.tg.calls[since:] if c.method == "setMyCommands" and c.params["scope"] == scope]
        if calls:
            return [command["command"] for command in calls[-1].params["commands"]]
        await asyncio.sleep(0.02)
    return []


async def test_an_adjustment_in_the_console_is_audited_told_and_made_once(app: TestClient, harness: BotHarness) -> None:
    member = await join(harness)
    headers = auth(harness, ADMIN_ID, **ADMIN)
    body = {"member": member.code, "points": 40, "reason": "Birthday <b>gift</b>", "key": "adjust-0123456789"}
    sent = len(harness.tg.calls)
    first = await app.post("/app/api/console/adjust", json=body, headers=headers)
    assert first.status == 201, await first.text()
    result = await first.json()
    assert result["balance"] == member.points + 40 and result["replayed"] is False
    [notice] = await harness.arrived(sent, MEMBER_ID)
    assert "+40 points from our team" in notice and "&lt;b&gt;gift&lt;/b&gt;" in notice
    assert await audit_actions(harness) == ["adjust"]
    before = await state(harness)
    again = await app.post("/app/api/console/adjust", json=body, headers=headers)
    assert again.status == 200 and (await again.json())["replayed"] is True
    assert await state(harness) == before
    assert len(harness.texts(harness.tg.calls[sent:], MEMBER_ID)) == 1  # told once


async def test_an_admin_cannot_adjust_their_own_account_or_below_zero(app: TestClient, harness: BotHarness) -> None:
    admin = await join(harness, ADMIN_ID, "Ada")
    member = await join(harness)
    headers = auth(harness, ADMIN_ID, **ADMIN)
    own = await app.post(
        "/app/api/console/adjust",
        json={"member": admin.code, "points": 10, "reason": "me", "key": "own-0123456789"},
        headers=headers,
    )
    assert own.status == 403 and (await own.json())["error"]["code"] == "own_account"
    before = await state(harness)
    short = await app.post(
        "/app/api/console/adjust",
        json={"member": member.code, "points": -(member.points + 1), "reason": "x", "key": "short-0123456789"},
        headers=headers,
    )
    assert short.status == 409 and "nothing was changed" in (await short.json())["error"]["message"]
    assert await state(harness) == before
    assert "own_adjust" in await audit_actions(harness)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("console/adjust", {"points": 0, "reason": "x", "key": "k" * 12}),
        ("console/adjust", {"points": 10, "reason": "", "key": "k" * 12}),
        ("console/adjust", {"points": "ten", "reason": "x", "key": "k" * 12}),
        ("console/adjust", {"points": 10_000_000, "reason": "x", "key": "k" * 12}),
        ("console/adjust", {"points": 10, "reason": "x", "key": "bad key"}),
        ("console/adjust", {"member": "NOSUCH00", "points": 10, "reason": "x", "key": "k" * 12}),
        ("console/birthday", {"birthday": "05/03"}),
        ("console/birthday", {"birthday": "2999-01-01"}),
        ("console/birthday", {"birthday": "02-30"}),
        ("console/staff/grant", {"role": "owner"}),
        ("console/staff/grant", {"role": "king"}),
        ("console/staff/remove", {"ref": "NOSUCH00"}),
        ("console/staff/invite", {"role": "member", "key": "k" * 12}),
    ],
)
async def test_bad_input_gets_a_readable_message_and_changes_nothing(
    app: TestClient, harness: BotHarness, path: str, body: dict[str, Any]
) -> None:
    member = await join(harness)
    before = await state(harness)
    payload = {"member": member.code, **body} if path != "console/staff/remove" else body
    response = await app.post(f"/app/api/{path}", json=payload, headers=auth(harness, ADMIN_ID, **ADMIN))
    assert 400 <= response.status < 500, await response.text()
    assert (await response.json())["error"]["message"]
    assert await state(harness) == before


@pytest.mark.parametrize("who", [CASHIER_ID, SUPPORT_ID, MEMBER_ID])
async def test_only_admins_reach_the_console(app: TestClient, harness: BotHarness, who: int) -> None:
    member = await join(harness)
    if who != MEMBER_ID:
        await join(harness, who, "Staffer")
    before = await state(harness)
    headers = auth(harness, who)
    for method, path, body in [
        ("GET", "/app/api/console/members?q=ann", None),
        ("GET", "/app/view/console/members?q=ann", None),
        ("GET", f"/app/api/console/member?ref={member.code}", None),
        ("GET", f"/app/view/console/member?ref={member.code}", None),
        ("GET", "/app/api/console/staff", None),
        ("GET", "/app/view/console/staff", None),
        ("POST", "/app/api/console/adjust", {"member": member.code, "points": 5, "reason": "x", "key": "k" * 12}),
        ("POST", "/app/api/console/birthday", {"member": member.code, "birthday": "1990-07-14"}),
        ("POST", "/app/api/console/staff/grant", {"member": member.code, "role": "cashier"}),
        ("POST", "/app/api/console/staff/remove", {"ref": str(CASHIER_ID)}),
        ("POST", "/app/api/console/staff/invite", {"role": "admin", "key": "k" * 12}),
    ]:
        response = await app.request(method, path, json=body, headers=headers)
        assert response.status == 403, (path, await response.text())
        assert member.code not in await response.text()
    assert await state(harness) == before


async def test_the_console_corrects_a_birthday_as_setbirthday_does(app: TestClient, harness: BotHarness) -> None:
    member = await join(harness)
    headers = auth(harness, ADMIN_ID, **ADMIN)
    response = await app.post(
        "/app/api/console/birthday", json={"member": member.code, "birthday": "1990-07-14"}, headers=headers
    )
    assert response.status == 200, await response.text()
    page = await (await app.get(f"/app/api/console/member?ref={member.code}", headers=headers)).json()
    assert page["birthday_key"] == "1990-07-14"
    # Locked for the member, not for staff: a second correction and a clear.
    again = await app.post(
        "/app/api/console/birthday", json={"member": member.code, "birthday": "07-15"}, headers=headers
    )
    assert again.status == 200
    cleared = await app.post(
        "/app/api/console/birthday", json={"member": member.code, "birthday": "clear"}, headers=headers
    )
    assert cleared.status == 200
    assert (await harness.member(MEMBER_ID)).birth_month is None  # type: ignore[union-attr]


async def test_staff_roles_are_given_listed_and_taken_back_in_the_audit_log(
    app: TestClient, harness: BotHarness
) -> None:
    member = await join(harness)
    headers = auth(harness, ADMIN_ID, **ADMIN)
    grant = {"member": member.code, "role": "cashier"}
    sent = len(harness.tg.calls)
    given = await app.post("/app/api/console/staff/grant", json=grant, headers=headers)
    assert given.status == 200, await given.text()
    assert "purchase" in await menu_of(harness, sent, MEMBER_ID)  # their menu follows, as after /staff in chat
    before = await state(harness)
    replay = await app.post("/app/api/console/staff/grant", json=grant, headers=headers)
    assert replay.status == 409 and (await replay.json())["error"]["code"] == "held"
    assert await state(harness) == before
    # The chat agrees: the member is a cashier now, and /staff list says so.
    [listed] = harness.texts(await harness.send(harness.user(ADMIN_ID, "Ada"), "/staff list"), ADMIN_ID)
    assert str(MEMBER_ID) in listed
    staff = await (await app.get("/app/api/console/staff", headers=headers)).json()
    row = next(s for s in staff["staff"] if s["telegram_id"] == MEMBER_ID)
    assert row["removable"] is True and row["role"] == "cashier"
    assert next(s for s in staff["staff"] if s["telegram_id"] == ADMIN_ID)["removable"] is False  # from settings
    sent = len(harness.tg.calls)
    removed = await app.post("/app/api/console/staff/remove", json={"ref": str(MEMBER_ID)}, headers=headers)
    assert removed.status == 200 and (await removed.json())["role"] == "member"
    menu = await menu_of(harness, sent, MEMBER_ID)
    assert "balance" in menu and "purchase" not in menu
    gone = await app.post("/app/api/console/staff/remove", json={"ref": str(MEMBER_ID)}, headers=headers)
    assert gone.status == 409
    settings_only = await app.post("/app/api/console/staff/remove", json={"ref": str(CASHIER_ID)}, headers=headers)
    assert settings_only.status == 409 and "LOYALTY_CASHIER_IDS" in (await settings_only.json())["error"]["message"]
    own = await app.post(
        "/app/api/console/staff/grant", json={"member": str(ADMIN_ID), "role": "cashier"}, headers=headers
    )
    assert own.status in (403, 404)
    assert [a for a in await audit_actions(harness) if a.startswith("staff")] == ["staff_grant", "staff_remove"]


async def test_an_invitation_link_is_made_once_per_key_and_works_in_the_chat(
    app: TestClient, harness: BotHarness
) -> None:
    headers = auth(harness, ADMIN_ID, **ADMIN)
    body = {"role": "support", "key": "invite-0123456789"}
    first = await app.post("/app/api/console/staff/invite", json=body, headers=headers)
    assert first.status == 200, await first.text()
    made = await first.json()
    again = await (await app.post("/app/api/console/staff/invite", json=body, headers=headers)).json()
    assert again["link"] == made["link"]
    async with harness.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(StaffInvite))).scalar_one() == 1
    assert await audit_actions(harness) == ["staff_invite"]
    payload = made["link"].split("?start=", 1)[1]
    [welcome] = harness.texts(await harness.send(harness.user(4444, "Sue"), f"/start {payload}"), 4444)
    assert "Welcome to the team" in welcome


async def test_a_purchase_on_the_member_page_is_refunded_once_and_the_member_told(
    app: TestClient, harness: BotHarness
) -> None:
    member = await join(harness)
    await harness.purchase(member.code, "50", "R-1")
    headers = auth(harness, ADMIN_ID, **ADMIN)
    page = await (await app.get(f"/app/api/console/member?ref={member.code}", headers=headers)).json()
    body = {"purchase_id": page["purchases"][0]["purchase_id"], "key": "refund-0123456789"}
    sent = len(harness.tg.calls)
    first = await app.post("/app/api/till/refunds", json=body, headers=headers)
    assert first.status == 201, await first.text()
    [notice] = await harness.arrived(sent, MEMBER_ID)
    assert "refunded" in notice
    again = await app.post("/app/api/till/refunds", json=body, headers=headers)
    assert again.status == 200 and (await again.json())["replayed"] is True
    page = await (await app.get(f"/app/api/console/member?ref={member.code}", headers=headers)).json()
    assert page["purchases"][0]["refundable"] is False


async def test_admins_see_the_console_tab_and_cashiers_do_not(app: TestClient, harness: BotHarness) -> None:
    await join(harness, language="zh-hans")
    admin = await (await app.get("/app/view/till", headers=auth(harness, ADMIN_ID, **ADMIN))).text()
    cashier = await (await app.get("/app/view/till", headers=auth(harness, CASHIER_ID))).text()
    assert 'data-go="console/dashboard"' in admin and 'data-go="console/' not in cashier


async def test_the_console_is_in_the_openapi_document(app: TestClient) -> None:
    paths = (await (await app.get("/api/v1/openapi.json")).json())["paths"]
    for path in ("/app/api/console/members", "/app/api/console/member", "/app/api/console/staff"):
        assert "get" in paths[path], path
    for path in ("/app/api/console/adjust", "/app/api/console/birthday", "/app/api/console/staff/invite"):
        assert "post" in paths[path], path


async def test_the_member_page_shows_vip_and_whether_it_renews(app: TestClient, harness: BotHarness) -> None:
    program = harness.services.program
    assert program.vip is not None
    harness.services.programs.current = program.model_copy(
        update={"vip": program.vip.model_copy(update={"renew": "subscription"})}
    )
    member = await join(harness)
    url = f"/app/api/console/member?ref={member.code}"
    page = await (await app.get(url, headers=auth(harness, ADMIN_ID, **ADMIN))).json()
    assert page["vip_until"] is None and page["vip_renews"] is None
    calls = await harness.send(harness.user(MEMBER_ID), "/vip")
    [link] = [c.response["result"] for c in calls if c.method == "createInvoiceLink"]
    stamp = int(harness.clock().timestamp())
    await harness.feed(harness.tg.subscription_payment_update(harness.user(MEMBER_ID), link, now=stamp))
    page = await (await app.get(url, headers=auth(harness, ADMIN_ID, **ADMIN))).json()
    assert page["vip_until"] == "Dec 22, 2026" and page["vip_renews"] is True
    view = await app.get(f"/app/view/console/member?ref={member.code}", headers=auth(harness, ADMIN_ID, **ADMIN))
    assert "renews by subscription" in await view.text()
    await harness.send(harness.user(MEMBER_ID), "/vip")
    await harness.press(harness.user(MEMBER_ID), "Cancel renewal")
    page = await (await app.get(url, headers=auth(harness, ADMIN_ID, **ADMIN))).json()
    assert page["vip_renews"] is False
    # /stats counts VIP members and their subscriptions right now.
    calls = await harness.send(harness.user(ADMIN_ID, "Boss"), "/stats")
    assert any("VIP now: 1 · subscriptions renewing 0 · cancelled 1" in text for text in harness.texts(calls))
