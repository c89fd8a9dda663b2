"""Reads ahead: what a handler will read of its sender's member row, fetched with who sent the update."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiogram.dispatcher.event.handler import FilterObject
from aiogram.filters import Filter
from aiogram.types import Message

from loyalty.members import Rider


@dataclass(frozen=True)
class ReadAhead:
    """A handler's read that rides along with ``loyalty.members.identify`` (``bot.middlewares.UpdateContext``).

    The middleware must identify the sender before routing (role filters need it), so it cannot know the
    handler; it asks the handler's own filters instead. A message that matches gets the rider in handler data
    under ``key``, with its values once the sender is a member. A wrong guess costs only unused columns, and a
    handler given no rider reads for itself, so correctness never depends on the guess.
    """

    key: str
    """The handler's argument that receives the rider."""
    triggers: tuple[Filter, ...]
    """The filters the handler is registered with, any one of which routes a message to it."""
    rider: Callable[[dict[str, Any]], Rider]
    """Builds the rider from the update's data (the program, the clock)."""
    _checks: tuple[FilterObject, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # FilterObject passes each filter only the data it asks for, as aiogram does when routing.
        object.__setattr__(self, "_checks", tuple(FilterObject(callback=trigger) for trigger in self.triggers))

    async def matches(self, message: Message, data: dict[str, Any]) -> bool:
        for check in self._checks:
            if await check.call(message, **data):
                return True
        return False
