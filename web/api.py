"""The purchases API for tills and online shops: purchases, refunds, member look-up and adjustments over HTTP.

It calls the same ``loyalty`` functions as /purchase, /refund and /adjust, so amounts, limits, idempotency and
member notifications follow the same rules. Errors are JSON ``{"error": {"code", "message"}}`` for developers.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import Counter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty import stores
from loyalty.account import MAX_ADJUSTMENT, adjust
from loyalty.ledger import InsufficientPoints
from loyalty.members import find_member
from loyalty.program import Program
from loyalty.purchases import (
    API_SCOPE,
    CATEGORY_RE,
    CLOCK_SKEW,
    MAX_ITEMS,
    RECEIPT_RE,
    AmountError,
    AmountProblem,
    InputProblem,
    PurchaseInput,
    PurchaseInputError,
    PurchaseResult,
    check_purchase,
    from_minor,
    parse_amount,
    record_purchase,
    to_minor,
)
from loyalty.refunds import RefundProblem, RefundRefused, receipts, refund
from notifications.purchases import announce_purchase, notify_adjustment, notify_refund
from storage.database import DbSession
from storage.models import LedgerEntry, Member, Purchase
from web.miniapp import openapi_paths
from web.miniapp.core import CONFIG as APP_CONFIG
from web.services import SERVICES, WebServices

log = logging.getLogger(__name__)
MINUTE = timedelta(minutes=1)

API_REQUESTS = Counter(
    "loyalty_api_requests_total", "Purchases API requests, by operation and status", ["operation", "status"]
)

PREFIX = "/api/v1"
SCOPE = web.RequestKey("scope", str)  # the request's: the name of the token it came with
MAX_BODY = 16 * 1024  # a purchase is a few hundred bytes; a bigger body is a mistake or an attack
SOURCE = "api"
KEY_HEADER = "Idempotency-Key"
_ID = RECEIPT_RE.pattern  # receipts, external ids and idempotency keys share one shape

_M = TypeVar("_M", bound=BaseModel)

_AMOUNT_MESSAGES = {
    AmountProblem.NOT_A_NUMBER: 'amount must be a decimal string like "12.50"',
    AmountProblem.NOT_POSITIVE: "amount must be more than zero",
    AmountProblem.TOO_PRECISE: "amount has more decimal places than the currency allows",
    AmountProblem.TOO_LARGE: "amount is above the program's limit for one purchase",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, **self.extra)


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.json_response({"error": {"code": code, "message": message, **extra}}, status=status, headers=headers)


# ------------------------------------------------------------------------------------------------ models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PurchaseIn(_Model):
    member: str = Field(min_length=1, max_length=64, description="Member code, Telegram id or @username")
    amount: str = Field(
        min_length=1, max_length=32, description="Decimal string in the program's currency", examples=["12.50"]
    )
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="Must be the program's currency")
    category: str | None = Field(default=None, pattern=CATEGORY_RE.pattern)
    items: int = Field(default=1, ge=1, le=MAX_ITEMS)
    external_id: str | None = Field(
        default=None, pattern=_ID, description="The receipt's id: the purchase's idempotency key"
    )
    occurred_at: AwareDatetime | None = Field(
        default=None,
        description=f"when the purchase happened, ISO 8601 with a UTC offset: at most {CLOCK_SKEW // MINUTE} minutes "
        "ahead of the bot's clock (a till's clock may run fast) and at most [api] backdate_days back",
    )
    store: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_-]{1,32}$",
        description="A [[stores]] key: where it happened (default: the store whose tills use this API token, if any)",
    )


class MemberRef(_Model):
    code: str
    first_name: str


class PurchaseOut(_Model):
    purchase_id: int
    external_id: str
    member: MemberRef
    amount: str
    currency: str
    category: str | None
    items: int
    points: int
    balance: int = Field(description="The member's balance now")
    store: str | None = Field(default=None, description="The [[stores]] key where it happened")
    pending_points: int = Field(
        default=0, description="Of the points, those still inside the return window ([earn] pending_days)"
    )
    available_at: datetime | None = Field(
        default=None, description="When the purchase's points became or become spendable; null: at once"
    )
    occurred_at: datetime
    recorded_at: datetime
    replayed: bool = Field(description="True when this repeats an earlier request with the same key")


class RefundIn(_Model):
    external_id: str = Field(pattern=_ID, description="The purchase's external_id (receipt)")
    amount: str | None = Field(default=None, min_length=1, max_length=32, description="Omit to refund all that is left")
    refund_id: str | None = Field(default=None, pattern=_ID, description="Idempotency key (or the header)")
    store: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_-]{1,32}$",
        description="A [[stores]] key: where it happened (default: the store whose tills use this API token, if any)",
    )


class RefundOut(_Model):
    refund_id: int
    external_id: str
    amount: str
    currency: str
    points: int = Field(description="Points taken back (those still pending are cancelled)")
    refunded_total: str
    balance: int
    replayed: bool


class MemberOut(_Model):
    code: str
    telegram_id: int
    first_name: str
    username: str | None
    language: str
    points: int
    pending_points: int = Field(default=0, description="Not spendable yet: purchases inside the return window")
    lifetime_points: int
    tier: str | None
    joined_at: datetime


class AdjustmentIn(_Model):
    points: int = Field(ge=-MAX_ADJUSTMENT, le=MAX_ADJUSTMENT, description="Signed, not zero")
    reason: str = Field(min_length=1, max_length=256)
    adjustment_id: str | None = Field(default=None, pattern=_ID, description="Idempotency key (or the header)")
    silent: bool = Field(
        default=False, description="true: the member is not told (they are, with the reason, by default)"
    )


class AdjustmentOut(_Model):
    adjustment_id: int
    member: MemberRef
    points: int
    balance: int
    replayed: bool


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody


# ------------------------------------------------------------------------------------------------ plumbing

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every API answer is JSON, whatever went wrong."""
    if not request.path.startswith(PREFIX + "/"):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as error:
        return error.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason)
    except Exception:
        log.exception("API %s %s failed", request.method, request.path)
        return error_response(500, "internal", "internal error; the request may be retried with the same key")


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(PREFIX + "/") or request.path == PREFIX + "/openapi.json":
        return await handler(request)
    tokens = request.app[SERVICES].settings.api_tokens
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    presented = given.strip().encode("utf-8", "surrogateescape")
    # compare_digest against every token, so timing does not tell how much of a guess was right.
    matches = [scope for token, scope in tokens.items() if hmac.compare_digest(presented, token.encode())]
    if scheme.lower() != "bearer" or not matches:
        raise ApiError(401, "unauthorized", "a valid bearer token is required (Authorization: Bearer <token>)")
    request[SCOPE] = matches[0]
    return await handler(request)


def _scoped(request: web.Request, key: str) -> str:
    """An idempotency key in the token's scope. Unnamed tokens keep the keys they always had."""
    scope = request[SCOPE]
    return key if scope == API_SCOPE else f"{scope}:{key}"


async def _read(request: web.Request, model: type[_M]) -> _M:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "too_large", f"the body is limited to {MAX_BODY} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(8192):
        body += chunk
        if len(body) > MAX_BODY:  # chunked uploads announce no length
            raise ApiError(413, "too_large", f"the body is limited to {MAX_BODY} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested thousands deep
        raise ApiError(400, "malformed_json", "the body must be a JSON object") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(part) for part in error["loc"]), "message": error["msg"]}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise ApiError(422, "invalid", "the body does not match the schema", details=details) from exc


def _key(request: web.Request, in_body: str | None, name: str) -> str:
    """The body's id wins; else the Idempotency-Key header. One of them is required."""
    if in_body:
        return in_body
    header = request.headers.get(KEY_HEADER)
    if header is None:
        raise ApiError(422, "key_required", f"give {name} in the body or an {KEY_HEADER} header")
    if not RECEIPT_RE.match(header):
        raise ApiError(400, "invalid_key", f"{KEY_HEADER}: 1-64 letters, digits and . / : # - _")
    return header


def _amount(text: str, program: Program) -> Decimal:
    try:
        return parse_amount(text, program)
    except AmountError as error:
        raise _amount_error(error) from error


def _amount_error(error: AmountError) -> ApiError:
    limit = {"limit": str(error.limit)} if error.problem is AmountProblem.TOO_LARGE and error.limit else {}
    return ApiError(422, error.problem.value, _AMOUNT_MESSAGES[error.problem], **limit)


def _checked(body: PurchaseIn, program: Program, now: datetime) -> PurchaseInput:
    """The chat's rules for a purchase (``check_purchase``); the schema has already refused most bad shapes."""
    try:
        return check_purchase(
            program,
            amount=body.amount,
            now=now,
            category=body.category,
            items=body.items,
            receipt=body.external_id,
            occurred_at=body.occurred_at,
        )
    except PurchaseInputError as error:
        if error.amount is not None:
            raise _amount_error(error.amount) from error
        if error.problem is InputProblem.IN_FUTURE:
            raise ApiError(
                422, "occurred_in_future", f"occurred_at is more than {CLOCK_SKEW // MINUTE} minutes ahead of our clock"
            ) from error
        if error.problem is InputProblem.TOO_OLD:
            days = program.api.backdate_days
            raise ApiError(422, "occurred_too_long_ago", f"occurred_at is more than {days} days ago") from error
        raise ApiError(422, "invalid", f"{error.problem.value} is not valid") from error


async def _member(session: DbSession, ref: str) -> Member:
    member = await find_member(session, ref)
    if member is None or member.id is None:
        raise ApiError(404, "member_not_found", "no member with that code, Telegram id or @username")
    return member


def _money(amount_minor: int, program: Program) -> str:
    return f"{from_minor(amount_minor, program):.{program.minor_digits}f}"


def _json(model: BaseModel, status: int) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


def _counted(operation: str, handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except ApiError as error:
            status = error.status
            raise
        finally:
            API_REQUESTS.labels(operation, str(status)).inc()

    return wrapped


# ------------------------------------------------------------------------------------------------ endpoints


def _purchase_out(purchase: Purchase, member: MemberRef, balance: int, program: Program, replayed: bool) -> PurchaseOut:
    assert purchase.id is not None
    return PurchaseOut(
        purchase_id=purchase.id,
        external_id=purchase.external_id,
        member=member,
        amount=_money(purchase.amount_minor, program),
        currency=purchase.currency,
        category=purchase.category,
        items=purchase.items,
        points=purchase.points,
        balance=balance,
        store=purchase.store,
        pending_points=purchase.pending_points,
        available_at=purchase.available_at,
        occurred_at=purchase.occurred_at,
        recorded_at=purchase.created_at,
        replayed=replayed,
    )


async def _store(session: AsyncSession, program: Program, given: str | None, request: web.Request) -> str | None:
    """The store given, else the one whose tills use this token (``loyalty.stores.where``)."""
    try:
        return await stores.where(session, program, explicit=given, token_name=request[SCOPE])
    except stores.UnknownStore as unknown:
        raise ApiError(
            422, "unknown_store", f"no store {unknown.key!r} in the program", stores=unknown.known
        ) from unknown


async def create_purchase(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    program = services.program
    body = await _read(request, PurchaseIn)
    key = _key(request, body.external_id, "external_id")
    if body.currency != program.currency:
        raise ApiError(422, "currency_mismatch", f"the program counts in {program.currency}, not {body.currency}")
    now = services.clock()
    given = _checked(body, program, now)
    async with services.sessions() as session:
        member = await _member(session, body.member)
        assert member.id is not None
        # Read now: a lost race for the key rolls the session back, which expires what it had loaded.
        member_id, ref = member.id, MemberRef(code=member.code, first_name=member.first_name)
        result = await record_purchase(
            session,
            program,
            store=await _store(session, program, body.store, request),
            member_id=member_id,
            amount=given.amount,
            source=SOURCE,
            external_id=key,
            now=now,
            category=given.category,
            items=given.items,
            occurred_at=given.occurred_at,
            scope=request[SCOPE],
        )
        recorded = result.purchase
        if not result.created and (
            (recorded.member_id, recorded.amount_minor, recorded.category, recorded.items)
            != (member_id, to_minor(given.amount, program), given.category, given.items)
            or (given.occurred_at is not None and recorded.occurred_at != given.occurred_at)
        ):
            raise ApiError(409, "idempotency_conflict", f"{key!r} was already used for a different purchase")
        out = _purchase_out(recorded, ref, result.balance, program, replayed=not result.created)
    if result.created:
        await _announce(services, member, result)
    return _json(out, 201 if result.created else 200)


async def _tell(services: WebServices, member: Member, notify: Callable[..., Awaitable[bool]], *args: Any) -> None:
    """Tell the member of a refund or an adjustment; as with purchases, a failed notice is only logged."""
    try:
        if not await notify(services.bot, services.i18n, member, *args):
            log.info("member %s was not told of a %s", member.id, notify.__name__)
    except Exception:
        log.warning("telling member %s (%s) failed", member.id, notify.__name__, exc_info=True)


async def _announce(services: WebServices, member: Member, result: PurchaseResult) -> None:
    # The purchase is recorded whatever Telegram says; a failed notification is only logged.
    try:
        if not await announce_purchase(services.bot, services.i18n, member, result, services.program):
            log.info("member %s was not notified of purchase %s", member.id, result.purchase.id)
    except Exception:
        log.warning("notifying member %s of purchase %s failed", member.id, result.purchase.id, exc_info=True)


async def create_refund(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    program = services.program
    body = await _read(request, RefundIn)
    key = _key(request, body.refund_id, "refund_id")
    amount = _amount(body.amount, program) if body.amount is not None else None
    async with services.sessions() as session:
        try:
            # Only this token's scope: another shop's receipt with the same number is not ours to refund.
            found = await receipts(session, body.external_id, request[SCOPE])
            purchase_id = found[0].id if found else None
            if purchase_id is None:
                raise RefundRefused(RefundProblem.UNKNOWN)
            result = await refund(
                session,
                program,
                purchase_id=purchase_id,
                amount=amount,
                key=f"api-refund:{_scoped(request, key)}",
                actor_id=0,
                now=services.clock(),
                store=await _store(session, program, body.store, request),
            )
        except RefundRefused as refused:
            if refused.problem is RefundProblem.UNKNOWN:
                raise ApiError(404, "purchase_not_found", "no purchase with that external_id") from refused
            if refused.problem is RefundProblem.CONFLICT:
                raise ApiError(
                    409, "idempotency_conflict", f"{key!r} was already used for a different refund"
                ) from refused
            if refused.problem is RefundProblem.NOTHING_LEFT:
                raise ApiError(409, "already_refunded", "the purchase is already fully refunded") from refused
            raise ApiError(
                422,
                "refund_too_large",
                "the amount is more than can still be refunded",
                refundable=_money(refused.refundable_minor, program),
            ) from refused
        assert result.refund.id is not None
        out = RefundOut(
            refund_id=result.refund.id,
            external_id=result.purchase.external_id,
            amount=_money(result.refund.amount_minor, program),
            currency=result.purchase.currency,
            points=result.refund.points,
            refunded_total=_money(result.purchase.refunded_minor, program),
            balance=result.balance,
            replayed=not result.created,
        )
    if result.created and result.member is not None:  # told once the connection is back in the pool
        refunded, points = result.refund.amount_minor, result.refund.points
        await _tell(services, result.member, notify_refund, refunded, points, result.balance, program)
    return _json(out, 201 if result.created else 200)


async def get_member(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    async with services.sessions() as session:
        member = await _member(session, request.match_info["ref"])
        out = MemberOut(
            code=member.code,
            telegram_id=member.telegram_id,
            first_name=member.first_name,
            username=member.username,
            language=member.language,
            points=member.points,
            pending_points=member.pending_points,
            lifetime_points=member.lifetime_points,
            tier=member.tier,
            joined_at=member.joined_at,
        )
    return _json(out, 200)


async def create_adjustment(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await _read(request, AdjustmentIn)
    if body.points == 0:
        raise ApiError(422, "invalid", "points must not be zero")
    key = _key(request, body.adjustment_id, "adjustment_id")
    async with services.sessions() as session:
        member = await _member(session, request.match_info["ref"])
        assert member.id is not None
        ref = MemberRef(code=member.code, first_name=member.first_name)  # read now: a refusal rolls back
        try:
            result = await adjust(
                session,
                services.program,
                member_id=member.id,
                delta=body.points,
                reason=body.reason,
                actor_id=0,
                key=f"api-adjust:{_scoped(request, key)}",
                now=services.clock(),
            )
        except InsufficientPoints as short:
            raise ApiError(
                409, "insufficient_points", "the member has fewer points than the deduction", balance=short.balance
            ) from short
        entry: LedgerEntry = result.entry
        if entry.member_id != member.id or entry.points != body.points:
            raise ApiError(409, "idempotency_conflict", f"{key!r} was already used for a different adjustment")
        assert entry.id is not None
        out = AdjustmentOut(
            adjustment_id=entry.id, member=ref, points=entry.points, balance=result.balance, replayed=not result.created
        )
    if result.created and not body.silent:
        await _tell(services, member, notify_adjustment, body.points, body.reason, result.balance)
    return _json(out, 201 if result.created else 200)


async def openapi_json(request: web.Request) -> web.Response:
    app = request.app.get(APP_CONFIG)
    return web.json_response(openapi_document(request.app[SERVICES].program, app.base if app else None))


def setup_api(app: web.Application) -> None:
    app.middlewares.extend([json_errors, bearer_auth])
    app.router.add_get(f"{PREFIX}/openapi.json", openapi_json)
    app.router.add_post(f"{PREFIX}/purchases", _counted("purchase", create_purchase))
    app.router.add_post(f"{PREFIX}/refunds", _counted("refund", create_refund))
    app.router.add_get(f"{PREFIX}/members/{{ref}}", _counted("member", get_member))
    app.router.add_post(f"{PREFIX}/members/{{ref}}/adjustments", _counted("adjustment", create_adjustment))


# ------------------------------------------------------------------------------------------------ OpenAPI

_MODELS: list[type[BaseModel]] = [
    PurchaseIn,
    PurchaseOut,
    RefundIn,
    RefundOut,
    MemberOut,
    AdjustmentIn,
    AdjustmentOut,
    ErrorOut,
]


def _schemas(models: list[type[BaseModel]]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Malformed JSON or header",
        401: "Missing or wrong bearer token",
        404: "Not found",
        409: "Conflict (key reused, already refunded, not enough points)",
        413: "Body too large",
        422: "Invalid input",
    }
    return {
        str(status): {"description": reasons[status], "content": {"application/json": {"schema": _ref("ErrorOut")}}}
        for status in statuses
    }


def _ok(name: str, created: bool) -> dict[str, Any]:
    content = {"application/json": {"schema": _ref(name)}}
    if not created:
        return {"200": {"description": "OK", "content": content}}
    return {
        "201": {"description": "Created", "content": content},
        "200": {"description": "A replay: the first request's result", "content": content},
    }


def openapi_document(program: Program, app_base: str | None = None) -> dict[str, Any]:
    """The purchases API, and the Mini App's JSON endpoints when the app is served (at ``app_base``)."""
    app_paths, app_models = openapi_paths(app_base) if app_base else ({}, [])
    key_header = {
        "name": KEY_HEADER,
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": _ID},
        "description": "Makes retries safe when the body carries no id of its own",
    }
    ref_param = {
        "name": "ref",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
        "description": "Member code, Telegram id or @username",
    }
    body = lambda name: {"required": True, "content": {"application/json": {"schema": _ref(name)}}}  # noqa: E731
    writes = (400, 401, 404, 409, 413, 422)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Loyalty Assistant purchases API",
            "version": "1",
            "description": f"Amounts are decimal strings in {program.currency}.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            f"{PREFIX}/purchases": {
                "post": {
                    "operationId": "createPurchase",
                    "summary": "Record a purchase and award its points",
                    "parameters": [key_header],
                    "requestBody": body("PurchaseIn"),
                    "responses": {**_ok("PurchaseOut", True), **_errors(*writes)},
                }
            },
            f"{PREFIX}/refunds": {
                "post": {
                    "operationId": "createRefund",
                    "summary": "Refund a purchase fully or partly",
                    "parameters": [key_header],
                    "requestBody": body("RefundIn"),
                    "responses": {**_ok("RefundOut", True), **_errors(*writes)},
                }
            },
            f"{PREFIX}/members/{{ref}}": {
                "get": {
                    "operationId": "getMember",
                    "summary": "A member's balance and tier",
                    "parameters": [ref_param],
                    "responses": {**_ok("MemberOut", False), **_errors(401, 404)},
                }
            },
            f"{PREFIX}/members/{{ref}}/adjustments": {
                "post": {
                    "operationId": "createAdjustment",
                    "summary": "Add or remove a member's points",
                    "parameters": [ref_param, key_header],
                    "requestBody": body("AdjustmentIn"),
                    "responses": {**_ok("AdjustmentOut", True), **_errors(*writes)},
                }
            },
        },
        "components": {
            "schemas": _schemas(_MODELS + app_models),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "telegramInitData": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "The Mini App's Telegram initData: `Authorization: tma <initData>`",
                },
            },
        },
    }
    document["paths"].update(app_paths)
    return document
