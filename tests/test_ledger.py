"""The ledger's invariants under random sequences of earn / spend / expire / adjust."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlmodel import SQLModel

from loyalty import ledger
from loyalty.ledger import InsufficientPoints, Kind
from storage.database import SessionFactory, begin_write, make_engine, make_session_factory
from storage.models import LedgerEntry, LotDraw, Member

T0 = datetime(2026, 1, 1, tzinfo=UTC)

operation = st.one_of(
    st.tuples(st.just("earn"), st.integers(1, 500), st.one_of(st.none(), st.integers(1, 60))),
    st.tuples(st.just("spend"), st.integers(1, 700), st.none()),
    st.tuples(st.just("adjust"), st.integers(-300, 300).filter(bool), st.none()),
    st.tuples(st.just("wait"), st.integers(1, 40), st.none()),
    st.tuples(st.just("refund"), st.integers(1, 400), st.integers(0, 30)),
)


async def _new_member(sessions: SessionFactory, telegram_id: int = 1) -> int:
    async with sessions() as session:
        await begin_write(session)
        member = Member(telegram_id=telegram_id, chat_id=telegram_id, code=f"TEST{telegram_id:04d}"[:8])
        session.add(member)
        await session.commit()
        assert member.id is not None
        return member.id


async def _check_invariants(sessions: SessionFactory, member_id: int) -> int:
    async with sessions() as session:
        points = (await session.execute(select(Member.points).where(Member.id == member_id))).scalar_one()
        total = (
            await session.execute(
                select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(LedgerEntry.member_id == member_id)
            )
        ).scalar_one()
        remaining = (
            await session.execute(
                select(func.coalesce(func.sum(LedgerEntry.remaining), 0)).where(LedgerEntry.member_id == member_id)
            )
        ).scalar_one()
        negative_lots = (await session.execute(select(func.count()).where(LedgerEntry.remaining < 0))).scalar_one()
        # Each negative entry is fully accounted for by its draws.
        undrawn = (
            await session.execute(
                select(LedgerEntry.id, LedgerEntry.kind, LedgerEntry.points, func.coalesce(func.sum(LotDraw.points), 0))
                .outerjoin(LotDraw, LotDraw.entry_id == LedgerEntry.id)
                .where(LedgerEntry.points < 0)
                .group_by(LedgerEntry.id, LedgerEntry.kind, LedgerEntry.points)
            )
        ).all()
    assert points == total and remaining == max(points, 0), (points, total, remaining)
    assert negative_lots == 0
    # Each negative entry is covered by its draws; only a refund may leave part of itself as debt, and what the
    # refunds still owe is exactly the debt: every credit that repaid one is recorded as the refund's draw on it.
    assert all(
        -entry_points == drawn or (kind == Kind.REFUND and drawn < -entry_points)
        for _, kind, entry_points, drawn in undrawn
    )
    owed = sum(-entry_points - drawn for _, _, entry_points, drawn in undrawn)
    assert owed == max(-points, 0), (owed, points)
    return int(points)


async def clear_all(sessions: SessionFactory) -> None:
    """Every table emptied, children first, before a hypothesis example: on PostgreSQL earlier examples' rows
    (refunds, punch cards) share the database and would hold their purchases and members by foreign key."""
    async with sessions() as session:
        await begin_write(session)
        for table in reversed(SQLModel.metadata.sorted_tables):
            await session.execute(table.delete())
        await session.commit()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=25))
def test_random_operations_keep_the_ledger_balanced(database_url: str, ops) -> None:
    # Hypothesis drives a fresh event loop per example, so the engine is made inside it.
    async def scenario() -> None:
        engine = make_engine(database_url)
        sessions = make_session_factory(engine)
        try:
            await run(sessions)
        finally:
            await engine.dispose()

    async def run(sessions: SessionFactory) -> None:
        await clear_all(sessions)
        member_id = await _new_member(sessions)
        now = T0
        lots: list[tuple[datetime | None, int]] = []
        for op, amount, extra in ops:
            async with sessions() as session:
                if op == "earn" or (op == "adjust" and amount > 0):
                    expires = now + timedelta(days=extra) if extra else None
                    await ledger.credit(session, member_id, amount, kind=Kind.PURCHASE, now=now, expires_at=expires)
                    lots.append((expires, amount))
                elif op in ("spend", "adjust"):
                    cost = abs(amount)
                    # What a model of the rules says is spendable right now.
                    live = sum(left for expires, left in lots if expires is None or expires > now)
                    try:
                        await ledger.debit(session, member_id, cost, kind=Kind.SPEND, now=now)
                    except InsufficientPoints:
                        assert cost > live
                        await session.rollback()
                    else:
                        assert cost <= live
                elif op == "refund":
                    # Take back from one of the earlier lots (picked by index), possibly into a debt.
                    earned = [
                        e.id
                        for e in (
                            await session.execute(
                                select(LedgerEntry).where(LedgerEntry.points > 0).order_by(LedgerEntry.id)
                            )
                        ).scalars()
                    ]
                    own = [earned[extra % len(earned)]] if earned else []
                    await ledger.claw_back(session, member_id, amount, now=now, from_lots=own)
                else:
                    now += timedelta(days=amount)
                    await ledger.expire_due(session, now)
                await session.commit()
            # Keep the model in step: expire, then recompute after the database's soonest-expiry-first draws.
            async with sessions() as session:
                rows = (
                    await session.execute(
                        select(LedgerEntry.expires_at, LedgerEntry.remaining).where(LedgerEntry.remaining > 0)
                    )
                ).all()
                lots = [(expires, left) for expires, left in rows]
            await _check_invariants(sessions, member_id)

    asyncio.run(scenario())


async def test_spend_draws_soonest_expiry_first_then_oldest(sessions: SessionFactory) -> None:
    member_id = await _new_member(sessions)
    async with sessions() as session:
        never, _ = await ledger.credit(session, member_id, 100, kind=Kind.PURCHASE, now=T0, expires_at=None)
        late, _ = await ledger.credit(
            session, member_id, 100, kind=Kind.PURCHASE, now=T0, expires_at=T0 + timedelta(days=90)
        )
        soon, _ = await ledger.credit(
            session, member_id, 100, kind=Kind.PURCHASE, now=T0, expires_at=T0 + timedelta(days=30)
        )
        await session.commit()
        _, balance = await ledger.debit(session, member_id, 150, kind=Kind.SPEND, now=T0)
        await session.commit()
        assert balance == 150
        remaining = {entry.id: entry.remaining for entry in (await session.execute(select(LedgerEntry))).scalars()}
    assert remaining[soon.id] == 0 and remaining[late.id] == 50 and remaining[never.id] == 100


async def test_expired_points_cannot_be_spent_before_the_job_runs(sessions: SessionFactory) -> None:
    member_id = await _new_member(sessions)
    async with sessions() as session:
        await ledger.credit(session, member_id, 100, kind=Kind.PURCHASE, now=T0, expires_at=T0 + timedelta(days=1))
        await session.commit()
        with pytest.raises(InsufficientPoints):
            await ledger.debit(session, member_id, 50, kind=Kind.SPEND, now=T0 + timedelta(days=2))
        await session.rollback()
    assert await _check_invariants(sessions, member_id) == 100


async def test_concurrent_spends_never_overdraw(sessions: SessionFactory) -> None:
    member_id = await _new_member(sessions)
    async with sessions() as session:
        await ledger.credit(session, member_id, 300, kind=Kind.PURCHASE, now=T0, expires_at=None)
        await session.commit()

    async def spend() -> bool:
        async with sessions() as session:
            try:
                await ledger.debit(session, member_id, 100, kind=Kind.SPEND, now=T0)
                await session.commit()
                return True
            except InsufficientPoints:
                await session.rollback()
                return False

    results = await asyncio.gather(*(spend() for _ in range(20)))
    assert sum(results) == 3
    assert await _check_invariants(sessions, member_id) == 0


async def test_key_is_unique(sessions: SessionFactory) -> None:
    from sqlalchemy.exc import IntegrityError

    member_id = await _new_member(sessions)
    async with sessions() as session:
        await ledger.credit(session, member_id, 10, kind=Kind.WELCOME, now=T0, expires_at=None, key="k")
        await session.commit()
        with pytest.raises(IntegrityError):
            await ledger.credit(session, member_id, 10, kind=Kind.WELCOME, now=T0, expires_at=None, key="k")
        await session.rollback()
    assert await _check_invariants(sessions, member_id) == 10
