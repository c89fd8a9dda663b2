"""The one notion of "now" that storage and the program use, so tests can pass their own clock."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Current time, timezone-aware UTC (SQLModel's UTCDateTime columns refuse naive values)."""
    return datetime.now(UTC)
