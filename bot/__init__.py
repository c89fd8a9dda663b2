"""The bot: composition root, start-up and the ``loyalty`` command. aiogram is imported here first, its models
built when first used (``bot.lazymodels``)."""

from bot.lazymodels import import_aiogram_deferred

import_aiogram_deferred()
