"""The console's Program editor over HTTP: admins only, on the server; problems keyed by the program's own keys;
a save is a new revision, in force here at once and in the audit log with its admin; an edit started from an older
revision is refused with what changed since; rollback, export and import; the preview earns as a purchase does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from loyalty.editor import SECTIONS
from loyalty.program import load_program, parse_program, program_data
from loyalty.revisions import current_number, ensure_first_revision, same_program
from storage.models import AuditLog, ProgramRevision
from tests.harness import ADMIN_ID, CASHIER_ID, SUPPORT_ID, BotHarness
from tests.test_miniapp import MEMBER_ID, auth, join, services_with_app
from web.server import make_http_app

OTHER_ADMIN = 9004
API = "/app/api/console/program"


@pytest.fixture
async def app(harness: BotHarness) -> AsyncIterator[TestClient]:
    async with harness.sessions() as session:
        await ensure_first_revision(session, harness.services.program, harness.clock())
    services = services_with_app(harness, admin_ids=frozenset({ADMIN_ID, OTHER_ADMIN}))
    async with TestClient(TestServer(make_http_app(services, serve_updates=True))) as client:
        yield client


def admin(harness: BotHarness, who: int = ADMIN_ID) -> dict[str, str]:
    return auth(harness, who, first_name="Ada" if who == ADMIN_ID else "Otto")


async def revisions(harness: BotHarness) -> int:
    async with harness.sessions() as session:
        return await current_number(session) or 0


async def audit(harness: BotHarness) -> list[AuditLog]:
    async with harness.sessions() as session:
        return list((await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars())  # type: ignore[arg-type]


def earn(points: str) -> dict[str, Any]:
    """The earn section as the form sends it, with another rate."""
    return {"section": "earn", "value": {**program_data(load_program())["earn"], "points_per_unit": points}}


async def test_every_section_has_a_form_filled_in_from_the_revision_in_force(
    app: TestClient, harness: BotHarness
) -> None:
    headers = admin(harness)
    page = await (await app.get(API, headers=headers)).json()
    assert page["revision"] == 1 and [s["key"] for s in page["sections"]] == list(SECTIONS)
    assert page["section"] is None
    rewards = await (await app.get(API, params={"section": "rewards"}, headers=headers)).json()
    [field] = rewards["section"]["fields"]
    program = harness.services.program
    assert field["kind"] == "rows" and len(field["rows"]) == len(program.rewards)
    first = {f["key"]: f for f in field["rows"][0]}
    assert first["key"]["value"] == program.rewards[0].key and first["title"]["label"] == "Title"
    assert first["title_zh_hans"]["label"] == "Title in Simplified Chinese"
    assert {f["key"] for f in field["fields"]} >= {"stock", "per_member_limit", "validity_days", "min_tier"}
    for section in SECTIONS:  # every form renders, in every language
        for language in ("en", "zh-Hans"):
            view = await app.get(
                "/app/view/console/program",
                params={"section": section},
                headers=auth(harness, ADMIN_ID, first_name="Ada", language_code=language),
            )
            assert view.status == 200, (section, await view.text())
    earn_zh = await app.get(
        "/app/view/console/program",
        params={"section": "earn"},
        headers=auth(harness, ADMIN_ID, first_name="Ada", language_code="zh-Hans"),
    )
    assert "每单位货币的积分" in await earn_zh.text()


async def test_a_check_names_the_key_with_the_models_message(app: TestClient, harness: BotHarness) -> None:
    headers = admin(harness)

    async def check(body: dict[str, Any]) -> dict[str, Any]:
        response = await app.post(f"{API}/check", json=body, headers=headers)
        assert response.status == 200, await response.text()
        return dict(await response.json())

    bad = await check(earn("-1"))
    assert bad["ok"] is False and "greater than 0" in bad["fields"]["earn.points_per_unit"]
    assert (await check(earn("2")))["ok"] is True and (await check(earn("2")))["changed"] is True
    assert (await check(earn("1")))["changed"] is False
    assert (await check({"section": "earn", "value": {"pointz": "2"}}))["fields"] == {"earn.pointz": "unknown key"}
    rewards = program_data(harness.services.program)["rewards"]
    twice = await check({"section": "rewards", "value": [rewards[0], rewards[0]]})
    assert "reward keys must be unique" in twice["fields"]["rewards"]
    half = await check({"section": "promotions", "value": [{"name": "Happy hour", "start_time": "15:00"}]})
    assert "exactly one of multiplier" in half["fields"]["promotions.0"]
    broken = await check({"section": "rewards", "value": []})  # the punch card's reward is gone
    assert "is not among [[rewards]] keys" in broken["fields"][""]
    assert bad["fields"]["earn.points_per_unit"] == "Input should be greater than 0"  # pydantic's own words
    # An admin reading Chinese is told pydantic's usual rules in Chinese; a rule of ours stays as the model says it.
    chinese = auth(harness, ADMIN_ID, first_name="Ada", language_code="zh-hans")
    said = await (await app.post(f"{API}/check", json=earn("-1"), headers=chinese)).json()
    assert said["fields"]["earn.points_per_unit"] == "应大于 0"
    long = {"section": "rewards", "value": [rewards[0] | {"title": "x" * 65}, *rewards[1:]]}
    said = await (await app.post(f"{API}/check", json=long, headers=chinese)).json()
    assert said["fields"]["rewards.0.title"] == "最多 64 个字符"
    said = await (await app.post(f"{API}/check", json={"section": "rewards", "value": []}, headers=chinese)).json()
    assert "is not among [[rewards]] keys" in said["fields"][""]


async def test_a_save_is_a_new_revision_in_force_at_once_and_audited_with_its_admin(
    app: TestClient, harness: BotHarness
) -> None:
    member = await join(harness)
    response = await app.post(
        f"{API}/save", json={**earn("2"), "based_on": 1, "note": "double points"}, headers=admin(harness)
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["revision"] == 2
    assert harness.services.program.revision == 2 and harness.services.program.earn.points_per_unit == 2
    [line] = await audit(harness)
    assert (line.actor_id, line.action) == (ADMIN_ID, "program_edit")
    assert line.detail == "program revision 2 (earn): double points"
    async with harness.sessions() as session:
        stored = await session.get(ProgramRevision, 2)
    assert stored is not None and stored.author_id == ADMIN_ID and stored.based_on == 1
    await harness.purchase(member.code, "10", "R-1")
    refreshed = await harness.member(MEMBER_ID)
    assert refreshed is not None and refreshed.points - member.points == 20
    [chat] = harness.texts(await harness.send(harness.user(ADMIN_ID, "Ada"), "/audit"), ADMIN_ID)
    assert "program_edit" in chat and str(ADMIN_ID) in chat


async def test_bad_input_is_refused_naming_the_key_and_saves_nothing(app: TestClient, harness: BotHarness) -> None:
    headers = admin(harness)
    for body, key in (
        (earn("0"), "earn.points_per_unit"),
        ({"section": "expiry", "value": {"policy": "days"}}, "expiry"),
        ({"section": "general", "value": {"name": "Beans", "timezone": "Mars/Base"}}, "timezone"),
        ({"section": "vip", "value": {"price_stars": "100"}}, "vip.benefits"),
    ):
        response = await app.post(f"{API}/save", json={**body, "based_on": 1}, headers=headers)
        assert response.status == 400, await response.text()
        error = (await response.json())["error"]
        assert key in error["fields"] and key in error["message"], error
    for body in (
        {"section": "nothing", "value": {}, "based_on": 1},
        {"section": "general", "value": {"earn": {"points_per_unit": "5"}}, "based_on": 1},
        {"section": "earn", "value": {}, "based_on": 99},
        {"section": "earn", "value": "x", "based_on": 1},
    ):
        response = await app.post(f"{API}/save", json=body, headers=headers)
        assert response.status == 400 and (await response.json())["error"]["message"]
    same = await app.post(f"{API}/save", json={**earn("1"), "based_on": 1}, headers=headers)
    assert same.status == 409 and (await same.json())["error"]["code"] == "unchanged"
    assert await revisions(harness) == 1 and await audit(harness) == []


async def test_two_admins_saving_from_one_revision_cannot_lose_a_change(app: TestClient, harness: BotHarness) -> None:
    first = await app.post(f"{API}/save", json={**earn("2"), "based_on": 1}, headers=admin(harness))
    assert first.status == 200
    second = await app.post(
        f"{API}/save",
        json={"section": "welcome", "value": {"bonus": 99}, "based_on": 1},
        headers=admin(harness, OTHER_ADMIN),
    )
    assert second.status == 409
    error = (await second.json())["error"]
    assert error["code"] == "stale" and error["changed"] == ["earn"] and error["current"] == 2
    assert "revision 2" in error["message"] and "Earning" in error["message"]
    assert await revisions(harness) == 2 and harness.services.program.welcome.bonus != 99
    again = await app.post(
        f"{API}/save",
        json={"section": "welcome", "value": {"bonus": 99}, "based_on": 2},
        headers=admin(harness, OTHER_ADMIN),
    )
    assert again.status == 200  # started again from revision 2: both changes stand
    assert harness.services.program.welcome.bonus == 99 and harness.services.program.earn.points_per_unit == 2


async def test_rollback_history_export_and_import(app: TestClient, harness: BotHarness) -> None:
    headers = admin(harness)
    original = harness.services.program
    assert (await app.post(f"{API}/save", json={**earn("3"), "based_on": 1}, headers=headers)).status == 200
    back = await app.post(f"{API}/rollback", json={"number": 1, "based_on": 2}, headers=headers)
    assert back.status == 200, await back.text()
    assert (await back.json())["revision"] == 3 and same_program(harness.services.program, original)
    stale = await app.post(f"{API}/rollback", json={"number": 1, "based_on": 2}, headers=headers)
    assert stale.status == 409 and (await stale.json())["error"]["code"] == "stale"
    missing = await app.post(f"{API}/rollback", json={"number": 9, "based_on": 3}, headers=headers)
    assert missing.status == 404
    page = await (await app.get(f"{API}/history", headers=headers)).json()
    assert [(r["number"], r["current"], r["restores"]) for r in page["revisions"]] == [
        (3, True, 1),
        (2, False, None),
        (1, False, None),
    ]
    assert page["revisions"][0]["changed"] == ["Earning"] and page["revisions"][1]["who"] == f"{ADMIN_ID}"

    for view, text in (("history", "Make current"), ("file", "Import a program file")):
        shown = await app.get(f"/app/view/console/program/{view}", headers=headers)
        assert shown.status == 200 and text in await shown.text()
    file = await (await app.get(f"{API}/file", headers=headers)).json()
    assert file["revision"] == 3 and same_program(parse_program(file["toml"]), original)
    same = await app.post(f"{API}/import", json={"toml": file["toml"], "based_on": 3}, headers=headers)
    assert same.status == 409 and (await same.json())["error"]["code"] == "unchanged"
    bad = await app.post(
        f"{API}/import", json={"toml": file["toml"] + "\n[tierz]\nx = 1\n", "based_on": 3}, headers=headers
    )
    assert bad.status == 400 and "tierz: unknown key" in (await bad.json())["error"]["message"]
    changed = file["toml"].replace('points_per_unit = "1"', 'points_per_unit = "4"')
    imported = await app.post(
        f"{API}/import", json={"toml": changed + "#" * 9000, "based_on": 3, "note": "from a file"}, headers=headers
    )
    assert imported.status == 200, await imported.text()
    assert harness.services.program.revision == 4 and harness.services.program.earn.points_per_unit == 4
    assert [(line.action, line.actor_id) for line in await audit(harness)] == [
        ("program_edit", ADMIN_ID),
        ("program_rollback", ADMIN_ID),
        ("program_import", ADMIN_ID),
    ]
    assert (await audit(harness))[1].detail == "program revision 3 (earn), brings back revision 1"


async def test_the_preview_earns_as_a_purchase_now_and_under_the_draft(app: TestClient, harness: BotHarness) -> None:
    headers = admin(harness)
    sample = {"amount": "10", "category": "coffee", "items": 1, "tier": None, "vip": False, "at": "2026-11-22T12:00"}
    response = await app.post(f"{API}/preview", json={**earn("2"), "sample": sample}, headers=headers)
    assert response.status == 200, await response.text()
    result = await response.json()
    assert (result["now"]["points"], result["draft"]["points"]) == (10, 20)
    assert result["now"]["revision"] == 1 and result["message"] == "+10 points with your changes."
    member = await join(harness)  # the same basket recorded for real earns what "now" said
    await harness.send(harness.user(CASHIER_ID, "Cass"), f"/purchase {member.code} 10 coffee R-9")
    refreshed = await harness.member(MEMBER_ID)
    assert refreshed is not None and refreshed.points - member.points == result["now"]["points"]
    bad = await app.post(f"{API}/preview", json={**earn("-2"), "sample": sample}, headers=headers)
    assert (await bad.json())["draft"] is None
    for wrong in ({**sample, "amount": "-1"}, {**sample, "at": "tomorrow"}, {**sample, "category": "a b"}):
        response = await app.post(f"{API}/preview", json={**earn("2"), "sample": wrong}, headers=headers)
        assert response.status == 400


@pytest.mark.parametrize("who", [CASHIER_ID, SUPPORT_ID, MEMBER_ID])
async def test_only_admins_reach_the_editor(app: TestClient, harness: BotHarness, who: int) -> None:
    await join(harness, who, "Staffer")
    headers = auth(harness, who)
    sample = {"amount": "10"}
    for method, path, body in [
        ("GET", API, None),
        ("GET", f"{API}?section=earn", None),
        ("GET", "/app/view/console/program?section=earn", None),
        ("GET", f"{API}/history", None),
        ("GET", "/app/view/console/program/history", None),
        ("GET", f"{API}/file", None),
        ("GET", "/app/view/console/program/file", None),
        ("POST", f"{API}/check", earn("2")),
        ("POST", f"{API}/preview", {**earn("2"), "sample": sample}),
        ("POST", f"{API}/save", {**earn("2"), "based_on": 1}),
        ("POST", f"{API}/import", {"toml": 'name = "Mine"', "based_on": 1}),
        ("POST", f"{API}/rollback", {"number": 1, "based_on": 1}),
    ]:
        response = await app.request(method, path, json=body, headers=headers)
        assert response.status == 403, (path, await response.text())
        assert "points_per_unit" not in await response.text()
    assert await revisions(harness) == 1 and await audit(harness) == []
