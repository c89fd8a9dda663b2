"""A campaign's lift over its randomized holdout, with 95% confidence intervals: plain arithmetic on four sums per
group, no database, so that a simulation with a known true lift can check the intervals directly.

Conversion (buyers / members) is compared with Newcombe's hybrid score interval (his method 10, from two Wilson
intervals): unlike the textbook Wald interval it stays honest when a rate is near 0 or 1 or a group is small.
Sales per member are compared with a Welch-style normal interval (each group's own variance). Below ``MINIMUM``
members in either group the report says the groups are too small to tell rather than print an interval."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
MINIMUM = 30  # members in each group below which no interval is given


@dataclass(frozen=True)
class Group:
    """One arm of a campaign: members, those who bought in the window, and their sales (minor units): the sum and
    the sum of squares, from which the mean and the variance follow."""

    members: int
    buyers: int
    sales: float
    sales_squared: float

    @property
    def conversion(self) -> float | None:
        return self.buyers / self.members if self.members else None

    @property
    def sales_per_member(self) -> float | None:
        return self.sales / self.members if self.members else None

    @property
    def variance(self) -> float | None:
        """The sample variance of sales per member (n − 1); None under two members."""
        if self.members < 2:
            return None
        mean = self.sales / self.members
        return max(self.sales_squared - self.members * mean * mean, 0.0) / (self.members - 1)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def sign(self) -> int:
        """1: the whole interval is above zero; −1: below; 0: it includes zero (no clear effect)."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for one proportion."""
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def conversion_difference(treated: Group, holdout: Group, z: float = Z95) -> Interval | None:
    """Treated minus holdout conversion, with Newcombe's hybrid score interval; None if a group is empty."""
    if not treated.members or not holdout.members:
        return None
    p1, p2 = treated.buyers / treated.members, holdout.buyers / holdout.members
    l1, u1 = wilson(treated.buyers, treated.members, z)
    l2, u2 = wilson(holdout.buyers, holdout.members, z)
    difference = p1 - p2
    low = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Interval(difference, low, high)


def sales_difference(treated: Group, holdout: Group, z: float = Z95) -> Interval | None:
    """Treated minus holdout sales per member, with a Welch-style normal interval; None when a variance is
    undefined (under two members)."""
    v1, v2 = treated.variance, holdout.variance
    if v1 is None or v2 is None:
        return None
    difference = treated.sales / treated.members - holdout.sales / holdout.members
    half = z * math.sqrt(v1 / treated.members + v2 / holdout.members)
    return Interval(difference, difference - half, difference + half)


@dataclass(frozen=True)
class Lift:
    kind: str  # "birthday" | "winback" | "broadcast"
    treated: Group
    holdout: Group
    conversion: Interval | None  # None: too small to tell
    sales: Interval | None

    @property
    def too_small(self) -> bool:
        return self.conversion is None or self.sales is None


def lift(kind: str, treated: Group, holdout: Group, minimum: int = MINIMUM) -> Lift:
    """The comparison, or none (``too_small``) while either group has fewer than ``minimum`` members."""
    if min(treated.members, holdout.members) < max(minimum, 2):
        return Lift(kind, treated, holdout, None, None)
    return Lift(kind, treated, holdout, conversion_difference(treated, holdout), sales_difference(treated, holdout))
