"""/staff: one-time invitation links, the staff list, removing roles given in chat, and their audit trail."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.settings import Settings
from loyalty import staffing
from loyalty.roles import Role, StaticRoles, role_of
from loyalty.staffing import Outcome, RemoveOutcome
from notifications.staffing import SETTINGS
from storage.database import SessionFactory, begin_write
from storage.models import AuditLog, StaffInvite, StaffRole
from tests.harness import ADMIN_ID, CASHIER_ID, SUPPORT_ID, BotHarness

REFUSED = "Sorry, that command is only for the shop's staff."
NEW = 7001  # the colleague who opens the link
OTHER = 7002
NOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
STATIC = StaticRoles(admins=frozenset({ADMIN_ID}), cashiers=frozenset({CASHIER_ID}), support=frozenset({SUPPORT_ID}))


async def _invite(harness: BotHarness, role: str = "cashier") -> str:
    """An admin's /staff invite; returns the /start payload of the link."""
    [reply] = harness.texts(await harness.send(harness.user(ADMIN_ID, "Boss"), f"/staff invite {role}"), ADMIN_ID)
    found = re.search(r"https://t\.me/loyalty_test_bot\?start=(staff_[A-Za-z0-9_-]+)", reply)
    assert found, reply
    return found.group(1)


async def _count(harness: BotHarness, model: type) -> int:
    async with harness.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def _granted(harness: BotHarness, telegram_id: int) -> str | None:
    async with harness.sessions() as session:
        row = await session.get(StaffRole, telegram_id)
        return row.role if row else None


def _menu(harness: BotHarness, chat_id: int) -> list[str]:
    commands = harness.tg.commands_for({"type": "chat", "chat_id": chat_id})
    assert commands is not None, f"no command menu was set for {chat_id}"
    return [c["command"] for c in commands]


async def _member_code(harness: BotHarness, user_id: int = 1001) -> str:
    await harness.send(harness.user(user_id, "Ann", username="ann_w"), "/start")
    member = await harness.member(user_id)
    assert member is not None
    return member.code


# --- end to end ---


async def test_an_invitation_makes_a_cashier_at_once(harness: BotHarness) -> None:
    code = await _member_code(harness)
    colleague = harness.user(NEW, "Cleo")
    assert harness.texts(await harness.send(colleague, f"/purchase {code} 10 coffee"), NEW) == [REFUSED]

    payload = await _invite(harness)
    assert len(payload) <= 64 and re.fullmatch(r"[A-Za-z0-9_-]+", payload)
    calls = await harness.send(colleague, f"/start {payload}")
    [welcome] = harness.texts(calls, NEW)
    assert "Welcome to the team of" in welcome and "Your role: cashier" in welcome
    [told] = harness.texts(calls, ADMIN_ID)
    assert "Cleo" in told and f"<code>{NEW}</code>" in told and "cashier" in told
    assert "purchase" in _menu(harness, NEW) and "adjust" not in _menu(harness, NEW)
    assert await _granted(harness, NEW) == "cashier"
    assert await harness.member(NEW) is None  # staff, not enrolled as a member by the link

    # No restart: the very next message is a cashier's.
    [recorded] = harness.texts(await harness.send(colleague, f"/purchase {code} 10 coffee"), NEW)
    assert "+10 points" in recorded

    # Opening it again changes nothing, and says so.
    again = harness.texts(await harness.send(colleague, f"/start {payload}"), NEW)
    assert again == ["You accepted this invitation already: nothing more to do."]
    assert await _count(harness, AuditLog) == 2  # invite, join


async def test_a_link_works_once(harness: BotHarness) -> None:
    payload = await _invite(harness, "support")
    await harness.send(harness.user(NEW, "Cleo"), f"/start {payload}")
    replies = harness.texts(await harness.send(harness.user(OTHER, "Mallory"), f"/start {payload}"), OTHER)
    assert replies == ["This staff invitation was already used. Ask an admin for a new one."]
    assert await _granted(harness, NEW) == "support" and await _granted(harness, OTHER) is None
    assert harness.texts(await harness.send(harness.user(OTHER, "Mallory"), "/inbox"), OTHER) == [REFUSED]
    assert harness.tg.commands_for({"type": "chat", "chat_id": OTHER}) is None


async def test_an_expired_link_changes_nothing(harness: BotHarness) -> None:
    payload = await _invite(harness)
    harness.clock.advance(hours=23, minutes=59)
    still = await _invite(harness)
    harness.clock.advance(minutes=1)  # the first is 24 hours old now
    replies = harness.texts(await harness.send(harness.user(NEW, "Cleo"), f"/start {payload}"), NEW)
    assert replies == ["This staff invitation has expired. Ask an admin for a new one."]
    assert await _granted(harness, NEW) is None
    harness.clock.advance(hours=23, minutes=58)
    assert "Welcome to the team" in harness.texts(await harness.send(harness.user(OTHER, "Ola"), f"/start {still}"))[0]


@pytest.mark.parametrize(
    "payload", ["staff_" + "A" * 32, "staff_", "staff_short", "staff_<b>x</b>", "staff_" + "a" * 58, "STAFF_x"]
)
async def test_unknown_or_made_up_links_are_refused(harness: BotHarness, payload: str) -> None:
    await _invite(harness)
    calls = await harness.send(harness.user(NEW, "Cleo"), f"/start {payload}")
    if payload.startswith("staff_"):
        assert harness.texts(calls, NEW) == ["This staff invitation link is not valid. Ask an admin for a new one."]
    else:  # not an invitation at all: /start joins as usual
        assert "Welcome to" in harness.texts(calls, NEW)[0]
    assert await _granted(harness, NEW) is None and await _count(harness, StaffRole) == 0


async def test_in_chinese_the_refusal_says_您(harness: BotHarness) -> None:
    payload = await _invite(harness)
    harness.clock.advance(days=2)
    [simplified] = harness.texts(await harness.send(harness.user(NEW, "李", "zh-hans"), f"/start {payload}"))
    [traditional] = harness.texts(await harness.send(harness.user(OTHER, "陳", "zh-hant"), f"/start {payload}"))
    assert "过期" in simplified and "您" in simplified
    assert "過期" in traditional and "您" in traditional and "你" not in traditional


async def test_an_admin_opening_their_own_link_does_not_use_it(harness: BotHarness) -> None:
    payload = await _invite(harness, "cashier")
    [reply] = harness.texts(await harness.send(harness.user(ADMIN_ID, "Boss"), f"/start {payload}"), ADMIN_ID)
    assert "already" in reply and "still open for someone else" in reply
    assert await _granted(harness, ADMIN_ID) is None
    assert "Welcome to the team" in harness.texts(await harness.send(harness.user(NEW, "Cleo"), f"/start {payload}"))[0]


async def test_only_admins_may_use_staff(harness: BotHarness) -> None:
    await _member_code(harness)
    for user_id in (CASHIER_ID, SUPPORT_ID, 1001, 4242):
        for command in ("/staff invite admin", "/staff list", f"/staff remove {CASHIER_ID}", "/staff"):
            assert harness.texts(await harness.send(harness.user(user_id, "Eve"), command), user_id) == [REFUSED]
    assert await _count(harness, StaffInvite) == 0 and await _count(harness, AuditLog) == 0


async def test_a_member_who_was_given_admin_in_chat_may_invite(harness: BotHarness) -> None:
    payload = await _invite(harness, "admin")
    await harness.send(harness.user(NEW, "Cleo"), f"/start {payload}")
    assert "staff" in _menu(harness, NEW)
    assert (
        "https://t.me/loyalty_test_bot?start=staff_"
        in harness.texts(await harness.send(harness.user(NEW, "Cleo"), "/staff invite support"))[0]
    )


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/staff", "Usage:"),
        ("/staff fire everyone", "Usage:"),
        ("/staff remove", "Usage:"),
        ("/staff list please", "Usage:"),
        ("/staff invite", "There is no role — to invite to"),
        ("/staff invite boss", "There is no role <code>boss</code> to invite to: choose cashier, support or admin."),
        ("/staff invite owner", "There is no role <code>owner</code>"),
        ("/staff invite <b>", "There is no role <code>&lt;b&gt;</code>"),
        ("/staff remove nobody", "No member or Telegram id found for nobody."),
        ("/staff remove @nobody", "No member or Telegram id found for @nobody."),
        ("/staff remove 5555", "No member or Telegram id found for 5555."),
    ],
)
async def test_bad_input_is_explained_and_changes_nothing(harness: BotHarness, command: str, expected: str) -> None:
    [reply] = harness.texts(await harness.send(harness.user(ADMIN_ID, "Boss"), command), ADMIN_ID)
    assert expected in reply
    assert await _count(harness, StaffInvite) == 0 and await _count(harness, AuditLog) == 0


async def test_list_shows_every_role_and_where_it_comes_from(harness: BotHarness) -> None:
    await _member_code(harness, CASHIER_ID)
    payload = await _invite(harness, "support")
    await harness.send(harness.user(NEW, "Cleo"), f"/start {payload}")
    [listing] = harness.texts(await harness.send(harness.user(ADMIN_ID, "Boss"), "/staff list"), ADMIN_ID)
    lines = listing.splitlines()
    assert lines[0] == "👥 <b>Staff</b>"
    assert f"<b>admin</b> · <code>{ADMIN_ID}</code> · not a member" in lines[1]
    assert "admin (settings: <code>LOYALTY_ADMIN_IDS</code>)" in lines[2]
    assert f"<b>cashier</b> · <code>{CASHIER_ID}</code> · Ann @ann_w <code>" in lines[3]
    assert "cashier (settings: <code>LOYALTY_CASHIER_IDS</code>)" in lines[4]
    assert f"<code>{NEW}</code>" in lines[5] or f"<code>{NEW}</code>" in lines[7]
    assert f"support (invited by {ADMIN_ID}," in listing
    assert "support (settings: <code>LOYALTY_SUPPORT_IDS</code>)" in listing


async def test_remove_takes_back_a_role_given_in_chat(harness: BotHarness) -> None:
    code = await _member_code(harness)
    colleague = harness.user(NEW, "Cleo", username="cleo")
    await harness.send(colleague, "/start")
    payload = await _invite(harness)
    await harness.send(colleague, f"/start {payload}")
    assert "purchase" in _menu(harness, NEW)

    [reply] = harness.texts(await harness.send(harness.user(ADMIN_ID, "Boss"), "/staff remove @Cleo"), ADMIN_ID)
    assert reply == "✅ @Cleo no longer has the role cashier. It is in the audit log (/audit)."
    assert await _granted(harness, NEW) is None
    assert "purchase" not in _menu(harness, NEW) and "balance" in _menu(harness, NEW)
    assert harness.texts(await harness.send(colleague, f"/purchase {code} 10 coffee"), NEW) == [REFUSED]
    again = harness.texts(await harness.send(harness.user(ADMIN_ID, "Boss"), f"/staff remove {NEW}"), ADMIN_ID)
    assert again == [f"{NEW} has no staff role: nothing was changed."]

    [log] = harness.texts(await harness.send(harness.user(ADMIN_ID, "Boss"), "/audit"), ADMIN_ID)
    lines = log.splitlines()
    assert f"{ADMIN_ID} · staff_remove · <code>" in lines[1] and f"role=cashier user={NEW}" in lines[1]
    assert f"{NEW} · staff_join · <code>" in lines[2] and f"role=cashier invite=1 from={ADMIN_ID}" in lines[2]
    assert f"{ADMIN_ID} · staff_invite · — role=cashier invite=1" in lines[3]


async def test_remove_works_by_telegram_id_for_staff_who_never_joined(harness: BotHarness) -> None:
    payload = await _invite(harness, "support")
    await harness.send(harness.user(NEW, "Cleo"), f"/start {payload}")
    [reply] = harness.texts(await harness.send(harness.user(ADMIN_ID, "Boss"), f"/staff remove {NEW}"), ADMIN_ID)
    assert "no longer has the role support" in reply
    assert await _granted(harness, NEW) is None and _menu(harness, NEW)[0] == "start"


async def test_roles_from_settings_cannot_be_removed_in_chat(harness: BotHarness) -> None:
    [reply] = harness.texts(await harness.send(harness.user(ADMIN_ID, "Boss"), f"/staff remove {CASHIER_ID}"), ADMIN_ID)
    assert "<code>LOYALTY_CASHIER_IDS</code>" in reply and "cannot be changed in chat" in reply
    assert "Nothing was changed" in reply
    async with harness.sessions() as session:
        await begin_write(session)
        session.add(StaffRole(telegram_id=CASHIER_ID, role="admin"))
        await session.commit()
    [both] = harness.texts(await harness.send(harness.user(ADMIN_ID, "Boss"), f"/staff remove {CASHIER_ID}"), ADMIN_ID)
    assert "no longer has the role admin" in both and "keep the role cashier" in both and "LOYALTY_CASHIER_IDS" in both
    assert "purchase" in _menu(harness, CASHIER_ID) and "adjust" not in _menu(harness, CASHIER_ID)


async def test_an_admin_does_not_remove_their_own_role(harness: BotHarness) -> None:
    payload = await _invite(harness, "admin")
    await harness.send(harness.user(NEW, "Cleo"), f"/start {payload}")
    [reply] = harness.texts(await harness.send(harness.user(NEW, "Cleo"), f"/staff remove {NEW}"), NEW)
    assert reply == "You cannot remove your own role: another admin can. Nothing was changed."
    assert await _granted(harness, NEW) == "admin"


def test_the_settings_named_are_the_real_ones() -> None:
    for role, name in SETTINGS.items():
        assert name.removeprefix("LOYALTY_").lower() in Settings.model_fields, (role, name)


# --- the rules, directly ---


async def test_the_token_is_random_url_safe_and_stored_only_as_a_hash(sessions: SessionFactory) -> None:
    async with sessions() as session:
        first = await staffing.create_invite(session, role=Role.CASHIER, actor_id=ADMIN_ID, now=NOW)
        second = await staffing.create_invite(session, role=Role.CASHIER, actor_id=ADMIN_ID, now=NOW)
    assert first.token != second.token and len(first.payload) <= 64
    assert re.fullmatch(r"staff_[A-Za-z0-9_-]{32}", first.payload)
    assert first.expires_at == NOW + timedelta(hours=24)
    async with sessions() as session:
        rows = (await session.execute(select(StaffInvite))).scalars().all()
    stored = " ".join(str(v) for row in rows for v in row.model_dump().values())
    assert first.token not in stored and second.token not in stored
    with pytest.raises(ValueError):
        async with sessions() as session:
            await staffing.create_invite(session, role=Role.OWNER, actor_id=ADMIN_ID, now=NOW)


async def test_two_people_racing_for_one_link_one_gets_it(sessions: SessionFactory) -> None:
    async with sessions() as session:
        invite = await staffing.create_invite(session, role=Role.ADMIN, actor_id=ADMIN_ID, now=NOW)

    async def open_as(telegram_id: int) -> Outcome:
        async with sessions() as session:
            result = await staffing.accept_invite(
                session, STATIC, payload=invite.payload, telegram_id=telegram_id, now=NOW
            )
            return result.outcome

    outcomes = await asyncio.gather(*(open_as(7000 + i) for i in range(4)))
    assert sorted(outcomes) == sorted([Outcome.JOINED] + [Outcome.USED] * 3)
    async with sessions() as session:
        assert len((await session.execute(select(StaffRole))).scalars().all()) == 1


async def test_an_invitation_replaces_a_lesser_role_and_respects_settings(sessions: SessionFactory) -> None:
    async with sessions() as session:
        await begin_write(session)
        session.add(StaffRole(telegram_id=NEW, role="support"))
        await session.commit()
        to_admin = await staffing.create_invite(session, role=Role.ADMIN, actor_id=ADMIN_ID, now=NOW)
        to_support = await staffing.create_invite(session, role=Role.SUPPORT, actor_id=ADMIN_ID, now=NOW)
    async with sessions() as session:
        raised = await staffing.accept_invite(session, STATIC, payload=to_admin.payload, telegram_id=NEW, now=NOW)
        assert (raised.outcome, raised.now_role) == (Outcome.JOINED, Role.ADMIN)
        assert await role_of(session, STATIC, NEW) is Role.ADMIN
        # A cashier from settings ranks above support, so a support grant would not count: the link stays open.
        hidden = await staffing.accept_invite(
            session, STATIC, payload=to_support.payload, telegram_id=CASHIER_ID, now=NOW
        )
        assert hidden.outcome is Outcome.SETTINGS and await session.get(StaffRole, CASHIER_ID) is None
        audit = (await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars().all()
    assert [a.action for a in audit] == ["staff_invite", "staff_invite", "staff_join"]
    assert audit[2].detail == f"role=admin invite=1 from={ADMIN_ID} was=support"


async def test_only_an_owner_removes_an_owner(sessions: SessionFactory) -> None:
    async with sessions() as session:
        await begin_write(session)
        session.add(StaffRole(telegram_id=NEW, role="owner"))
        await session.commit()
        refused = await staffing.remove_role(
            session, STATIC, ref=str(NEW), actor_id=ADMIN_ID, actor_role=Role.ADMIN, now=NOW
        )
        assert refused.outcome is RemoveOutcome.OWNER and await session.get(StaffRole, NEW) is not None
        done = await staffing.remove_role(session, STATIC, ref=str(NEW), actor_id=OTHER, actor_role=Role.OWNER, now=NOW)
        assert done.outcome is RemoveOutcome.REMOVED and done.now_role is Role.MEMBER
