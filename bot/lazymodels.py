"""aiogram's Telegram types, imported with their pydantic validators built on first use (issue 17, "Memory").

A reader can skip this module: it changes how much memory aiogram takes, not what it does.

``import aiogram.types`` ends with a loop that calls ``model_rebuild(_types_namespace=...)`` on each of its ~450
types, although they are declared ``defer_build=True``: that builds a validator and a serializer for every one of
them, about 75 MB of a process's memory, for the few dozen models a bot ever validates. Here that loop builds
nothing: while ``import aiogram`` runs, ``BaseModel.model_rebuild`` keeps the namespace the loop passes (the names
the types' annotations use but their modules import only for type checking) and returns. Afterwards it is
restored, and that namespace becomes every aiogram model's parent namespace, where pydantic looks when it builds
the model on first use; parametrised generics (``Response[Message]``) inherit it from their origin. Each model
then gets the same schema as before, later.

This leans on pydantic internals (the private ``_types_namespace`` parameter and ``__pydantic_parent_namespace__``),
hence the upper bound on pydantic in ``pyproject.toml`` and ``tests/test_memory.py``. When they are gone, aiogram
is imported as it is (its types built at import) and the fallback is counted and logged (``storage.fallbacks``).
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from pydantic import BaseModel

from storage.fallbacks import AIOGRAM_LAZY_MODELS, library, took_fallback

_PACKAGES = ("aiogram.types.", "aiogram.methods.")


def hook_problem() -> str | None:
    """Why the deferred import cannot be done with the installed pydantic, or None when it can."""
    rebuild = BaseModel.__dict__.get("model_rebuild")
    if not isinstance(rebuild, classmethod):
        return "BaseModel.model_rebuild is not a classmethod"
    parameter = inspect.signature(BaseModel.model_rebuild).parameters.get("_types_namespace")
    if parameter is None or parameter.kind is not parameter.KEYWORD_ONLY:
        return "BaseModel.model_rebuild takes no keyword _types_namespace"
    if "__pydantic_parent_namespace__" not in BaseModel.__dict__:
        return "BaseModel has no __pydantic_parent_namespace__"
    return None


def import_aiogram_deferred() -> None:
    """Import ``aiogram`` with its types' validators built on first use. Must run before anything imports aiogram;
    afterwards (or if something already did) it changes nothing."""
    if "aiogram" in sys.modules:
        return
    problem = hook_problem()
    if problem is not None:
        took_fallback(AIOGRAM_LAZY_MODELS, f"{library('pydantic')}: {problem}")
        import aiogram  # aiogram's own way: its types built at import

        return
    original = BaseModel.__dict__["model_rebuild"]
    namespace: dict[str, Any] = {}

    def deferring(cls: type[BaseModel], *, force: bool = False, _types_namespace: Any = None, **kwargs: Any) -> Any:
        if _types_namespace is not None and not force and cls.__module__.startswith("aiogram.types."):
            if not namespace:  # the loop passes one namespace to every type: keep it, build nothing
                namespace.update(_types_namespace)
            return None
        return original.__func__(cls, force=force, _types_namespace=_types_namespace, **kwargs)

    BaseModel.model_rebuild = classmethod(deferring)  # type: ignore[method-assign,assignment]
    try:
        import aiogram  # noqa: F401  (imports aiogram.types and aiogram.methods)
    finally:
        BaseModel.model_rebuild = original  # type: ignore[method-assign]
    if not namespace:
        took_fallback(
            AIOGRAM_LAZY_MODELS, f"{library('aiogram')}: aiogram.types no longer calls model_rebuild(_types_namespace=)"
        )
        return
    for name, module in list(sys.modules.items()):
        if not name.startswith(_PACKAGES) or module is None:
            continue
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__ == name
                and value.__dict__.get("__pydantic_parent_namespace__") is None
            ):
                value.__pydantic_parent_namespace__ = namespace
