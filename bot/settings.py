"""Settings from the environment (prefix ``LOYALTY_``) and an optional ``.env`` file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from storage.database import CONNECT_TIMEOUT, POOL_SIZE, STATEMENT_TIMEOUT

TELEGRAM_API = "https://api.telegram.org"

IdList = Annotated[frozenset[int], NoDecode]
TokenScopes = Annotated[dict[str, str], NoDecode]  # token -> the scope (name) its receipts and keys live in
# Telegram accepts 1-256 of these characters as a webhook secret token.
_SECRET = r"^[A-Za-z0-9_-]{1,256}$"
MIN_API_TOKEN = 16
_TOKEN_NAME = re.compile(r"^[a-z0-9_-]{1,32}$")
UNNAMED_SCOPE = "api"  # every token given without a name shares it, as all tokens did before names
RESERVED_SCOPES = frozenset({"chat"})


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_", env_file=".env", extra="ignore")

    bot_token: str | None = Field(default=None, pattern=r"^\d+:[A-Za-z0-9_-]+$")
    telegram_api_url: str = Field(default=TELEGRAM_API, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    database_url: str = "sqlite+aiosqlite:///loyalty.db"
    # Connections each process keeps for units of work (plus up to 10 for bursts), and on PostgreSQL as many
    # again for single reads: workers x (2 x pool + 10) must stay under PostgreSQL's max_connections.
    database_pool_size: int = Field(default=POOL_SIZE, ge=1, le=500)
    # Seconds: to open a PostgreSQL connection (or wait for a pooled one), and for one statement. A database
    # that stops answering fails an update within these, rather than holding it past Telegram's patience.
    database_connect_timeout: float = Field(default=CONNECT_TIMEOUT, gt=0, le=300)
    database_statement_timeout: float = Field(default=STATEMENT_TIMEOUT, gt=0, le=3600)
    admin_ids: IdList = frozenset()
    cashier_ids: IdList = frozenset()
    support_ids: IdList = frozenset()
    support_chat_id: int | None = None
    program_file: Path | None = None
    redis_url: str | None = None
    # Broadcasts: messages a second for the whole bot (Telegram allows about 30), or up to 1,000 with paid
    # broadcasts (allow_paid_broadcast, 0.1 Stars a message beyond the free limit).
    broadcast_rate: float = Field(default=25, gt=0, le=1000)
    paid_broadcasts: bool = False
    # The HTTP server: webhook, purchases API, health and metrics. Served in polling mode too.
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8080, ge=0, le=65535)
    log_format: Literal["text", "json"] = "text"
    # With a webhook URL the bot is served Telegram's updates over HTTP instead of long polling.
    webhook_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    webhook_secret: str | None = Field(default=None, pattern=_SECRET, validate_default=True)
    # Updates one worker handles at once. Beyond it the webhook answers 503 at once and Telegram delivers the update
    # again later, rather than every update in the worker waiting seconds for its share of the CPU. Measured on two
    # cores (bench.load): 24 held 450 updates a second under 0.4 s; 40 let a worker take more than it could serve,
    # and updates waited seconds for the database pool (20) and the CPU.
    max_updates_in_flight: int = Field(default=24, ge=1, le=10_000)
    # Bearer tokens for the purchases API (tills, online shops): comma-separated ``name:token`` (or bare tokens,
    # which share one scope); no token, no API access. Receipts and idempotency keys are scoped to the name.
    api_tokens: TokenScopes = Field(default_factory=dict)
    # The Mini App: its public HTTPS URL (served by this HTTP server at the URL's path, e.g. /app/); unset, chat only.
    webapp_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    # Seconds a Mini App session (Telegram's signed initData) is accepted after Telegram signed it.
    webapp_auth_max_age: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)

    @field_validator("admin_ids", "cashier_ids", "support_ids", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            try:
                return frozenset(int(part) for part in parts)
            except ValueError as exc:
                raise ValueError("expected comma-separated Telegram user ids, e.g. 123,456") from exc
        return value

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _tokens(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | set | frozenset | tuple):
            return value
        scopes: dict[str, str] = {}
        for entry in value:
            if not isinstance(entry, str):
                raise ValueError("expected comma-separated name:token pairs")
            name, colon, token = entry.partition(":")
            if not (colon and _TOKEN_NAME.match(name) and len(token) >= MIN_API_TOKEN):
                name, token = UNNAMED_SCOPE, entry  # a bare token (which may itself hold a colon)
            if name in RESERVED_SCOPES:
                raise ValueError(f"{name!r} is the chat's own scope: give the token another name")
            # A short token can be guessed; a comma inside one could not be told from a separator.
            if len(token) < MIN_API_TOKEN:
                raise ValueError(f"each token needs at least {MIN_API_TOKEN} characters (comma-separated)")
            if token in scopes:
                raise ValueError("the same token is given twice")
            scopes[token] = name
        return scopes

    @field_validator("webhook_secret")
    @classmethod
    def _secret_with_webhook(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Without a secret anyone who finds the URL could post updates as any user, staff included.
        if value is None and info.data.get("webhook_url"):
            raise ValueError("required with LOYALTY_WEBHOOK_URL: 1-256 characters A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        # People paste plain postgresql:// URLs; the async engine needs the asyncpg driver named.
        if value.startswith(("postgres://", "postgresql://")):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("use sqlite+aiosqlite:///file.db or postgresql+asyncpg://user@host/db")
        return value

    @field_validator("program_file")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning pydantic's report into one line that names the setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "LOYALTY_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise SettingsError(f"{name}: {first['msg'].removeprefix('Value error, ')}") from exc
