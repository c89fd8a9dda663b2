"""A fake Telegram Bot API server (aiohttp) for end-to-end tests and the offline demo.

A real aiogram ``Bot`` talks HTTP to it; every request is validated against the Bot API spec,
recorded as a :class:`Call`, and answered with a realistic result so the bot code runs unchanged.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import logging
import mimetypes
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from .spec import EntityParseError, Spec, load_spec, parse_html

__all__ = ["Call", "FakeBotAPI", "FakeTelegram"]

log = logging.getLogger(__name__)

JSONDict = dict[str, Any]
ChatId = int | str
Uploads = dict[str, tuple[str, bytes]]  # multipart part name -> (filename, content)
Handler = Callable[[str, JSONDict, Uploads], Awaitable[Any]]

SENT_PREFIXES = ("send", "edit", "copy", "forward")
# Telegram only delivers these when asked for them explicitly in allowed_updates.
OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
DEFAULT_TOPIC_COLOR = 0x6FB9F0
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
# Keys of a stored Message that are its content (copied by copyMessage/forwardMessage).
_ENVELOPE_KEYS = frozenset(
    {"message_id", "from", "chat", "date", "edit_date", "reply_markup", "message_thread_id", "reply_to_message"}
)
_MEDIA_TYPES = {
    "sendPhoto": ("photo", "PhotoSize"),
    "sendDocument": ("document", "Document"),
    "sendAudio": ("audio", "Audio"),
    "sendVoice": ("voice", "Voice"),
    "sendVideo": ("video", "Video"),
    "sendAnimation": ("animation", "Animation"),
    "sendVideoNote": ("video_note", "VideoNote"),
    "sendSticker": ("sticker", "Sticker"),
}
_INPUT_MEDIA_KEYS = {
    "photo": "PhotoSize",
    "document": "Document",
    "audio": "Audio",
    "video": "Video",
    "animation": "Animation",
}


@dataclass
class Call:
    """One request the bot made."""

    method: str
    params: JSONDict
    files: dict[str, bytes] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    response: JSONDict = field(default_factory=dict)
    content_type: str = ""
    """How the request came: application/json, a form, multipart, or "" for a GET without a body."""
    file_names: dict[str, str] = field(default_factory=dict)
    """The file name each uploaded part carried (``files`` has their content under the same part names)."""

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def result(self) -> Any:
        return self.response.get("result")

    @property
    def chat_id(self) -> ChatId | None:
        value = self.params.get("chat_id")
        return value if isinstance(value, int | str) else None

    @property
    def text(self) -> str | None:
        """Raw ``text`` or ``caption`` as sent (still with HTML tags)."""
        value = self.params.get("text", self.params.get("caption"))
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class _Fault:
    error_code: int
    description: str
    retry_after: int | None = None

    def response(self) -> JSONDict:
        body: JSONDict = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


class _ApiError(Exception):
    def __init__(self, error_code: int, description: str) -> None:
        super().__init__(description)
        self.fault = _Fault(error_code, description)


def _now() -> int:
    return int(time.time())


def _update_type(update: JSONDict) -> str | None:
    return next((k for k in update if k != "update_id"), None)


def _unique_id(file_id: str) -> str:
    return f"AgAD{zlib.crc32(file_id.encode()):08x}"


def _same_chat(a: Any, b: ChatId) -> bool:
    return str(a) == str(b)


class FakeTelegram:
    """In-process fake of ``api.telegram.org`` for one bot token.

    ``strict=True`` answers a request that breaks the spec with 400, like Telegram; ``strict=False``
    (demo) still records the error in :attr:`spec_errors` but serves the request when it can.
    """

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        bot_username: str = "loyalty_test_bot",
        spec_path: Path | None = None,
        strict: bool = True,
    ) -> None:
        self.token = token
        self.bot_username = bot_username
        self.strict = strict
        self.spec: Spec = load_spec(spec_path)
        prefix = token.split(":", 1)[0]
        self.bot_id = int(prefix) if prefix.isdigit() else 1
        self.me: JSONDict = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Loyalty Test Bot",
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.calls: list[Call] = []
        self.spec_errors: list[str] = []
        self.commands: dict[tuple[str, str], list[JSONDict]] = {}
        self.menu_buttons: dict[str, JSONDict] = {}
        # Supergroups that are forums (topics on): getChat reports is_forum for them.
        self.forum_chats: set[int] = set()
        self.webhook_url = ""
        # Called with every answered Call (the demo prints bot replies from here); exceptions are logged.
        self.listeners: list[Callable[[Call], object]] = []
        self._users: dict[int, JSONDict] = {}
        self._named_chats: dict[str, int] = {}
        self._messages: dict[tuple[str, int], JSONDict] = {}
        self._last_message_id: dict[str, int] = {}
        self._deleted: set[tuple[str, int]] = set()
        self._reply_keyboards: dict[str, JSONDict | None] = {}
        self._files: dict[str, bytes] = {}
        # Stars payments delivered with successful_payment_update: charge id -> payer, amount, refunded.
        self.charges: dict[str, JSONDict] = {}
        # Links made by createInvoiceLink: link -> its invoice (payload, amount, subscription_period if any).
        self.invoice_links: dict[str, JSONDict] = {}
        # Stars subscriptions, by their first payment's charge id: payer, link, expiration, is_canceled (by the bot).
        self.subscriptions: dict[str, JSONDict] = {}
        self._seq = itertools.count(1)
        self._topic_ids = itertools.count(2)
        self._updates: list[JSONDict] = []
        self._last_update_id = 0  # highest id handed out by a builder or push_update
        self._last_pushed_id = 0
        self._allowed_updates: frozenset[str] | None = None
        self._update_event = asyncio.Event()
        self._faults: dict[str, deque[_Fault]] = {}
        self._chat_faults: dict[str, _Fault] = {}
        self._rate: float | None = None
        self._send_latency = 0.0
        self._send_times: deque[float] = deque()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._closing = False
        self._handlers: dict[str, Handler] = {
            "getMe": self._h_get_me,
            "getUpdates": self._h_get_updates,
            "sendMessage": self._h_send_message,
            "sendMediaGroup": self._h_send_media_group,
            "sendInvoice": self._h_send_invoice,
            "sendDice": self._h_send_dice,
            "sendLocation": self._h_send_location,
            "sendContact": self._h_send_contact,
            "copyMessage": self._h_copy_message,
            "forwardMessage": self._h_forward_message,
            "editMessageText": self._h_edit_text,
            "editMessageCaption": self._h_edit_caption,
            "editMessageReplyMarkup": self._h_edit_reply_markup,
            "deleteMessage": self._h_delete_message,
            "setMyCommands": self._h_set_my_commands,
            "getMyCommands": self._h_get_my_commands,
            "deleteMyCommands": self._h_delete_my_commands,
            "setChatMenuButton": self._h_set_menu_button,
            "getChatMenuButton": self._h_get_menu_button,
            "getChat": self._h_get_chat,
            "getChatMember": self._h_get_chat_member,
            "getFile": self._h_get_file,
            "createForumTopic": self._h_create_forum_topic,
            "getWebhookInfo": self._h_get_webhook_info,
            "setWebhook": self._h_set_webhook,
            "deleteWebhook": self._h_delete_webhook,
            "createInvoiceLink": self._h_create_invoice_link,
            "refundStarPayment": self._h_refund_star_payment,
            "editUserStarSubscription": self._h_edit_user_star_subscription,
            "exportChatInviteLink": self._h_export_invite_link,
        }
        for method in _MEDIA_TYPES:
            self._handlers[method] = self._h_send_media

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0 picks a free port) and return the base URL."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.*}", self._handle_file)
        # Long-poll requests are woken on stop, so a short shutdown timeout is enough.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        real_port = self._runner.addresses[0][1]
        self._closing = False
        self._base_url = f"http://{host}:{real_port}"
        return self._base_url

    async def stop(self) -> None:
        self._closing = True
        self._wake_pollers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._base_url

    # ------------------------------------------------------------------------------ inspection

    def calls_of(self, method: str) -> list[Call]:
        method = method.lower()
        return [c for c in self.calls if c.method.lower() == method]

    def sent(self, chat_id: ChatId | None = None, *, ok_only: bool = False) -> list[Call]:
        """All send*/edit*/copy*/forward* calls (optionally to one chat, optionally successful only)."""
        return [
            c
            for c in self.calls
            if c.method.lower().startswith(SENT_PREFIXES)
            and (chat_id is None or _same_chat(c.params.get("chat_id"), chat_id))
            and (c.ok or not ok_only)
        ]

    def find_message(self, chat_id: ChatId, message_id: int) -> JSONDict | None:
        """A stored message (sent by the bot, or built with :meth:`message_update`), as it is now."""
        msg = self._messages.get((str(self._resolve_chat_id(chat_id)), message_id))
        return copy.deepcopy(msg) if msg is not None else None

    def messages(self, chat_id: ChatId) -> list[JSONDict]:
        """Messages the bot sent to a chat and has not deleted, oldest first."""
        key = str(self._resolve_chat_id(chat_id))
        found = [m for (c, _), m in self._messages.items() if c == key and self._is_own(m)]
        return [copy.deepcopy(m) for m in sorted(found, key=lambda m: m["message_id"])]

    def last_message(self, chat_id: ChatId) -> JSONDict | None:
        """The last stored message the bot sent to a chat (with edits applied), or None."""
        msgs = self.messages(chat_id)
        return msgs[-1] if msgs else None

    def last_text(self, chat_id: ChatId) -> str | None:
        """Plain text (HTML stripped) or caption of :meth:`last_message`."""
        msg = self.last_message(chat_id)
        if msg is None:
            return None
        value = msg.get("text", msg.get("caption"))
        return value if isinstance(value, str) else None

    def file(self, file_id: str) -> bytes | None:
        """The content of a file the bot uploaded or a user sent (see :meth:`photo`), by its file_id."""
        return self._files.get(file_id)

    def reply_keyboard(self, chat_id: ChatId) -> JSONDict | None:
        """The ReplyKeyboardMarkup currently shown in a chat (None if never sent or removed)."""
        return copy.deepcopy(self._reply_keyboards.get(str(self._resolve_chat_id(chat_id))))

    def commands_for(self, scope: JSONDict | None = None, language_code: str = "") -> list[JSONDict] | None:
        """Commands set for a scope (default scope if None) and language, or None if never set."""
        return self.commands.get((_scope_key(scope), language_code))

    def pending_updates(self) -> list[JSONDict]:
        return copy.deepcopy(self._updates)

    def clear(self) -> None:
        """Forget recorded calls and spec errors (messages, updates and faults stay)."""
        self.calls.clear()
        self.spec_errors.clear()

    def assert_clean(self) -> None:
        """Raise AssertionError listing every spec violation the bot committed."""
        if self.spec_errors:
            listing = "\n  ".join(self.spec_errors)
            raise AssertionError(f"{len(self.spec_errors)} Bot API spec error(s):\n  {listing}")

    # ------------------------------------------------------------------------------ faults

    def fail_next(
        self,
        method: str,
        error_code: int,
        description: str,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an error (429 carries retry_after)."""
        if error_code == 429 and retry_after is None:
            retry_after = 1
        queue = self._faults.setdefault(method.lower(), deque())
        queue.extend(_Fault(error_code, description, retry_after) for _ in range(times))

    def fail_for_chat(
        self,
        chat_id: ChatId,
        error_code: int = 403,
        description: str = "Forbidden: bot was blocked by the user",
    ) -> None:
        """Answer every call addressed to ``chat_id`` with an error until :meth:`clear_faults`."""
        self._chat_faults[str(chat_id)] = _Fault(error_code, description)

    def clear_faults(self) -> None:
        self._faults.clear()
        self._chat_faults.clear()

    def rate_limit(self, per_second: float | None) -> None:
        """Limit send* calls to ``per_second`` in a sliding 1 s window (None disables); excess gets 429."""
        self._rate = per_second
        self._send_times.clear()

    def slow_sends(self, seconds: float) -> None:
        """Answer send* calls ``seconds`` late, the message already delivered: a slow network, and a window in
        which a client that stops waiting cannot know whether its message arrived."""
        self._send_latency = seconds

    def _take_fault(self, method: str, params: JSONDict) -> _Fault | None:
        queue = self._faults.get(method.lower())
        if queue:
            fault = queue.popleft()
            if not queue:
                del self._faults[method.lower()]
            return fault
        chat_id = params.get("chat_id")
        if chat_id is not None and str(chat_id) in self._chat_faults:
            return self._chat_faults[str(chat_id)]
        if self._rate is not None and method.startswith("send"):
            now = time.monotonic()
            while self._send_times and now - self._send_times[0] >= 1.0:
                self._send_times.popleft()
            if len(self._send_times) >= self._rate:
                return _Fault(429, "Too Many Requests: retry after 1", 1)
            self._send_times.append(now)
        return None

    # ------------------------------------------------------------------------------ updates

    def push_update(self, update: JSONDict) -> JSONDict:
        """Queue an update for getUpdates; give it a fresh update_id unless it has a newer one."""
        update = copy.deepcopy(update)
        uid = update.get("update_id")
        if not isinstance(uid, int) or uid <= self._last_pushed_id:
            # Builder ids may be pushed out of order; getUpdates offsets need queued ids to keep rising.
            uid = max(self._last_pushed_id, self._last_update_id) + 1
        update["update_id"] = uid
        self._last_pushed_id = uid
        self._last_update_id = max(self._last_update_id, uid)
        self._updates.append(update)
        self._wake_pollers()
        return copy.deepcopy(update)

    def _wake_pollers(self) -> None:
        self._update_event.set()
        self._update_event = asyncio.Event()

    def _next_update_id(self) -> int:
        self._last_update_id += 1
        return self._last_update_id

    def _deliverable(self, update: JSONDict) -> bool:
        kind = _update_type(update)
        if self._allowed_updates is None:
            return kind not in OPT_IN_UPDATES
        return kind in self._allowed_updates

    # ------------------------------------------------------------------------------ builders

    def user(
        self,
        id: int,
        first_name: str = "Ann",
        username: str | None = None,
        language_code: str | None = "en",
        last_name: str | None = None,
    ) -> JSONDict:
        """A User dict; remembered so private chats with it carry the user's name."""
        user: JSONDict = {"id": id, "is_bot": False, "first_name": first_name}
        if last_name is not None:
            user["last_name"] = last_name
        if username is not None:
            user["username"] = username
        if language_code is not None:
            user["language_code"] = language_code
        self._users[id] = user
        return copy.deepcopy(user)

    def private_chat(self, user: JSONDict) -> JSONDict:
        chat: JSONDict = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        for key in ("last_name", "username"):
            if key in user:
                chat[key] = user[key]
        return chat

    def message_update(
        self,
        user: JSONDict,
        text: str | None = None,
        chat: JSONDict | None = None,
        **extra: Any,
    ) -> JSONDict:
        """An Update with a new message from ``user`` (a "/cmd" text gets its bot_command entity)."""
        chat = copy.deepcopy(chat) if chat is not None else self.private_chat(user)
        message: JSONDict = {
            "message_id": self._next_message_id(chat["id"]),
            "from": copy.deepcopy(user),
            "chat": chat,
            "date": _now(),
        }
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                command = text.split(maxsplit=1)[0] if text.strip() else text
                length = len(command.encode("utf-16-le")) // 2
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        message.update(copy.deepcopy(extra))
        self._store(message)
        return {"update_id": self._next_update_id(), "message": copy.deepcopy(message)}

    def photo(self, data: bytes, width: int = 800, height: int = 800) -> list[JSONDict]:
        """The PhotoSize list of a photo a user sends (``message_update(user, photo=...)``); the bot can getFile it
        and send it on by its file_id."""
        file_id = f"AgACAgUser-{next(self._seq)}"
        self._files[file_id] = data
        large: JSONDict = {
            "file_id": file_id,
            "file_unique_id": _unique_id(file_id),
            "width": width,
            "height": height,
            "file_size": len(data),
        }
        # Telegram's smaller sizes are other files; one thumbnail of the same content is enough here.
        small = dict(large, file_id=file_id + "-s", file_unique_id=_unique_id(file_id + "-s"), width=90, height=90)
        self._files[small["file_id"]] = data
        return [small, large]

    def callback_update(self, user: JSONDict, message: JSONDict, data: str) -> JSONDict:
        """An Update with a callback query from pressing a button of ``message``."""
        query: JSONDict = {
            "id": str(next(self._seq) + 10**15),
            "from": copy.deepcopy(user),
            "message": copy.deepcopy(message),
            "chat_instance": str(zlib.crc32(f"{self.bot_id}:{message['chat']['id']}".encode())),
            "data": data,
        }
        return {"update_id": self._next_update_id(), "callback_query": query}

    def my_chat_member_update(self, user: JSONDict, status: str) -> JSONDict:
        """The bot's membership in the private chat with ``user`` changed to ``status`` ("kicked", ...)."""
        old_status = "member" if status == "kicked" else "kicked"
        update: JSONDict = {
            "update_id": self._next_update_id(),
            "my_chat_member": {
                "chat": self.private_chat(user),
                "from": copy.deepcopy(user),
                "date": _now(),
                "old_chat_member": self._chat_member(old_status, self.me),
                "new_chat_member": self._chat_member(status, self.me),
            },
        }
        return update

    def pre_checkout_update(self, user: JSONDict, total_amount: int, payload: str, currency: str = "XTR") -> JSONDict:
        """The member pressed Pay on an invoice: the bot must answer with answerPreCheckoutQuery."""
        query: JSONDict = {
            "id": str(next(self._seq) + 10**15),
            "from": copy.deepcopy(user),
            "currency": currency,
            "total_amount": total_amount,
            "invoice_payload": payload,
        }
        return {"update_id": self._next_update_id(), "pre_checkout_query": query}

    def successful_payment_update(
        self,
        user: JSONDict,
        total_amount: int,
        payload: str,
        currency: str = "XTR",
        charge_id: str | None = None,
    ) -> JSONDict:
        charge_id = charge_id or f"stxCharge{next(self._seq)}"
        payment = {
            "currency": currency,
            "total_amount": total_amount,
            "invoice_payload": payload,
            "telegram_payment_charge_id": charge_id,
            "provider_payment_charge_id": "",
        }
        # Remembered so refundStarPayment can answer as Telegram does (a second refund of a charge fails).
        self.charges.setdefault(
            charge_id, {"user_id": user["id"], "total_amount": total_amount, "payload": payload, "refunded": False}
        )
        return self.message_update(user, successful_payment=payment)

    def subscription_payment_update(
        self, user: JSONDict, link: str, *, now: int | None = None, charge_id: str | None = None
    ) -> JSONDict:
        """The member paid a subscription invoice link (createInvoiceLink with subscription_period): its first
        payment, as Telegram delivers it (is_recurring, is_first_recurring, the period's end). ``now``: Unix time
        of the payment (tests drive a clock); the subscription is then known to editUserStarSubscription."""
        invoice = self.invoice_links[link]
        if "subscription_period" not in invoice:
            raise ValueError(f"{link} is not a subscription invoice link")
        charge_id = charge_id or f"stxSub{next(self._seq)}"
        expires = (now if now is not None else _now()) + invoice["subscription_period"]
        self.subscriptions.setdefault(
            charge_id, {"user_id": user["id"], "link": link, "expires": expires, "is_canceled": False}
        )
        return self._subscription_payment(user, invoice, charge_id, expires, first=True)

    def renewal_payment_update(self, user: JSONDict, subscription: str, *, charge_id: str | None = None) -> JSONDict:
        """Telegram renewed the subscription started by charge ``subscription``: a new payment with a new charge id
        and the next period's end. Refused (ValueError) when the bot cancelled the subscription: Telegram would not
        charge it."""
        sub = self.subscriptions[subscription]
        if sub["is_canceled"]:
            raise ValueError(f"subscription {subscription} was cancelled: Telegram does not renew it")
        invoice = self.invoice_links[sub["link"]]
        sub["expires"] += invoice["subscription_period"]
        return self._subscription_payment(
            user, invoice, charge_id or f"stxRenew{next(self._seq)}", sub["expires"], first=False
        )

    def _subscription_payment(
        self, user: JSONDict, invoice: JSONDict, charge_id: str, expires: int, *, first: bool
    ) -> JSONDict:
        payment: JSONDict = {
            "currency": "XTR",
            "total_amount": invoice["total_amount"],
            "invoice_payload": invoice["payload"],
            "subscription_expiration_date": expires,
            "is_recurring": True,
            "telegram_payment_charge_id": charge_id,
            "provider_payment_charge_id": "",
        }
        if first:
            payment["is_first_recurring"] = True
        self.charges.setdefault(
            charge_id,
            {
                "user_id": user["id"],
                "total_amount": invoice["total_amount"],
                "payload": invoice["payload"],
                "refunded": False,
            },
        )
        return self.message_update(user, successful_payment=payment)

    def refunded_payment_update(self, user: JSONDict, charge_id: str) -> JSONDict:
        """The service message Telegram sends when a Stars payment was refunded (by the bot or otherwise)."""
        charge = self.charges[charge_id]
        refunded = {
            "currency": "XTR",
            "total_amount": charge["total_amount"],
            "invoice_payload": charge["payload"],
            "telegram_payment_charge_id": charge_id,
        }
        return self.message_update(user, refunded_payment=refunded)

    def _chat_member(self, status: str, user: JSONDict) -> JSONDict:
        member_type = self.spec.union_member("ChatMember", status)
        if member_type is None:
            raise ValueError(f"unknown chat member status {status!r}")
        member: JSONDict = self.spec.example(member_type)
        member.update(status=status, user=copy.deepcopy(user))
        return member

    # ------------------------------------------------------------------------------ chats & store

    def _resolve_chat_id(self, chat_id: Any) -> ChatId:
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            if chat_id not in self._named_chats:
                self._named_chats[chat_id] = -1001000000000 - len(self._named_chats) - 1
            return self._named_chats[chat_id]
        if isinstance(chat_id, str):
            try:
                return int(chat_id)
            except ValueError:
                return chat_id
        return int(chat_id)

    def _chat(self, chat_id: Any) -> JSONDict:
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            return {
                "id": self._resolve_chat_id(chat_id),
                "type": "channel",
                "title": chat_id[1:],
                "username": chat_id[1:],
            }
        cid = self._resolve_chat_id(chat_id)
        if isinstance(cid, int) and cid > 0:
            user = self._users.get(cid) or {"id": cid, "first_name": "User"}
            return self.private_chat(user)
        kind = "supergroup" if str(cid).startswith("-100") else "group"
        chat: JSONDict = {"id": cid, "type": kind, "title": f"Test {kind}"}
        if cid in self.forum_chats:
            chat["is_forum"] = True
        return chat

    def _next_message_id(self, chat_id: Any) -> int:
        key = str(self._resolve_chat_id(chat_id))
        self._last_message_id[key] = self._last_message_id.get(key, 0) + 1
        return self._last_message_id[key]

    def _store(self, message: JSONDict) -> None:
        self._messages[(str(message["chat"]["id"]), message["message_id"])] = message

    def _is_own(self, message: JSONDict) -> bool:
        return bool(message.get("from", {}).get("id") == self.bot_id)

    def _new_message(self, params: JSONDict, **content: Any) -> JSONDict:
        chat = self._chat(params["chat_id"])
        message: JSONDict = {
            "message_id": self._next_message_id(chat["id"]),
            "from": copy.deepcopy(self.me),
            "chat": chat,
            "date": _now(),
        }
        if isinstance(params.get("message_thread_id"), int):
            message["message_thread_id"] = params["message_thread_id"]
            message["is_topic_message"] = True
        reply_to = params.get("reply_parameters") or {}
        reply_id = reply_to.get("message_id") if isinstance(reply_to, dict) else None
        if reply_id is None and isinstance(params.get("reply_to_message_id"), int):
            reply_id = params["reply_to_message_id"]
        if isinstance(reply_id, int):
            original = self._messages.get((str(chat["id"]), reply_id))
            if original is not None:
                message["reply_to_message"] = {k: v for k, v in original.items() if k != "reply_to_message"}
        message.update({k: v for k, v in content.items() if v is not None})
        self._apply_markup(message, params.get("reply_markup"))
        self._store(message)
        return message

    def _apply_markup(self, message: JSONDict, markup: Any) -> None:
        if not isinstance(markup, dict):
            return
        key = str(message["chat"]["id"])
        # Only inline keyboards are part of a Message; reply keyboards belong to the chat's input field.
        if "inline_keyboard" in markup:
            message["reply_markup"] = copy.deepcopy(markup)
        elif "keyboard" in markup:
            self._reply_keyboards[key] = copy.deepcopy(markup)
        elif markup.get("remove_keyboard"):
            self._reply_keyboards[key] = None

    def _formatted(self, params: JSONDict, key: str, entities_key: str) -> tuple[str | None, Any]:
        raw = params.get(key)
        if not isinstance(raw, str):
            return None, None
        mode = params.get("parse_mode")
        if isinstance(mode, str) and mode.lower() == "html":
            try:
                plain, entities = parse_html(raw)
            except EntityParseError:  # only reachable with strict=False
                return raw, None
            return plain, entities or None
        return raw, params.get(entities_key) or None

    def _file_object(self, type_name: str, source: Any, files: Uploads, **extra: Any) -> JSONDict:
        seq = next(self._seq)
        data = b""
        filename = ""
        if isinstance(source, str) and source.startswith("attach://"):
            filename, data = files.get(source[len("attach://") :], ("", b""))
            file_id = f"{type_name}-{seq}-{self.bot_id}"
        elif isinstance(source, str) and not source.startswith(("http://", "https://")):
            file_id = source  # re-sending by file_id keeps the id
        else:
            file_id = f"{type_name}-{seq}-{self.bot_id}"
        if data:
            self._files[file_id] = data
        obj: JSONDict = self.spec.example(type_name)
        obj.update(file_id=file_id, file_unique_id=_unique_id(file_id))
        known = {f.name for f in self.spec.types.get(type_name, ())}
        if data and "file_size" in known:
            obj["file_size"] = len(data)
        if filename and "file_name" in known:
            obj["file_name"] = filename
            mime, _ = mimetypes.guess_type(filename)
            if mime and "mime_type" in known:
                obj["mime_type"] = mime
        obj.update(extra)
        return obj

    def _media_content(self, kind: str, type_name: str, source: Any, files: Uploads) -> Any:
        if kind == "photo":
            small = self._file_object("PhotoSize", source, files, width=90, height=90)
            large = dict(small, width=800, height=800)
            return [small, large]
        sizes = {"width": 640, "height": 480} if kind in ("video", "animation") else {}
        return self._file_object(type_name, source, files, **sizes)

    # ------------------------------------------------------------------------------ HTTP

    async def _read_params(self, request: web.Request) -> tuple[JSONDict, Uploads]:
        params: JSONDict = dict(request.query)
        files: Uploads = {}
        if request.method != "POST" or not request.can_read_body:
            return params, files
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
            return params, files
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = (value.filename, value.file.read())
            else:
                params[key] = value if isinstance(value, str) else bytes(value).decode()
        return params, files

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response(_Fault(401, "Unauthorized").response(), status=401)
        path = request.match_info["path"]
        data = self._files.get(path.removeprefix("files/"))
        if data is None:
            return web.json_response(_Fault(404, "Not Found").response(), status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response(_Fault(401, "Unauthorized").response(), status=401)
        raw_method = request.match_info["method"]
        content_type = request.content_type if request.body_exists else ""
        try:
            raw_params, files = await self._read_params(request)
        except (ValueError, UnicodeDecodeError) as exc:
            raw_params, files = {}, {}
            self.spec_errors.append(f"{raw_method}: unreadable request body: {exc}")
        method = self.spec.method_name(raw_method)
        params, errors = self.spec.parse_request(raw_method, raw_params, set(files))
        call = Call(
            method or raw_method,
            params,
            {k: data for k, (_, data) in files.items()},
            errors,
            content_type=content_type,
            file_names={k: name for k, (name, _) in files.items() if name},
        )
        self.calls.append(call)
        if errors:
            self.spec_errors.extend(f"{call.method}: {e}" for e in errors)
            log.warning("Bot API spec violation in %s: %s", call.method, "; ".join(errors))
        if method is None:
            call.response = _Fault(404, "Not Found").response()
        elif errors and self.strict:
            call.response = _Fault(400, "Bad Request: " + "; ".join(errors)).response()
        elif (fault := self._take_fault(method, params)) is not None:
            call.response = fault.response()
        else:
            call.response = await self._dispatch(method, params, files)
            if self._send_latency and method.startswith("send"):
                await asyncio.sleep(self._send_latency)
        for listener in list(self.listeners):
            try:
                listener(call)
            except Exception:
                log.exception("FakeTelegram listener failed")
        status = 200 if call.ok else int(call.response.get("error_code", 500))
        return web.json_response(call.response, status=status)

    async def _dispatch(self, method: str, params: JSONDict, files: Uploads) -> JSONDict:
        handler = self._handlers.get(method, self._h_default)
        try:
            result = await handler(method, params, files)
        except _ApiError as exc:
            return exc.fault.response()
        except Exception as exc:
            # A crash here is an emulator bug or a request strict mode would have refused; make it loud.
            log.exception("FakeTelegram failed to serve %s", method)
            self.spec_errors.append(f"{method}: emulator error: {exc!r}")
            return _Fault(500, f"Internal Server Error: {exc!r}").response()
        return {"ok": True, "result": result}

    # ------------------------------------------------------------------------------ method handlers

    async def _h_default(self, method: str, params: JSONDict, files: Uploads) -> Any:
        returns = self.spec.returns.get(method, ("Boolean",))
        main = returns[0]
        if main == "Message":
            if "chat_id" in params:
                return self._new_message(params)
            return True
        if main == "MessageId":
            return {"message_id": self._next_message_id(params["chat_id"])}
        if main == "Array of MessageId":
            return [{"message_id": self._next_message_id(params["chat_id"])} for _ in params.get("message_ids", [])]
        return self.spec.example(main) if main != "Boolean" else True

    async def _h_get_me(self, method: str, params: JSONDict, files: Uploads) -> Any:
        return self.me

    async def _h_get_updates(self, method: str, params: JSONDict, files: Uploads) -> Any:
        offset = params.get("offset")
        limit = max(1, min(100, int(params.get("limit") or 100)))
        timeout = max(0.0, float(params.get("timeout") or 0))
        if "allowed_updates" in params:
            allowed = params["allowed_updates"]
            self._allowed_updates = frozenset(allowed) if allowed else None
        if isinstance(offset, int):
            if offset < 0:
                self._updates = self._updates[offset:]
            else:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._updates = [u for u in self._updates if self._deliverable(u)]
            remaining = deadline - loop.time()
            if self._updates or self._closing or remaining <= 0:
                break
            event = self._update_event
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                break
        return copy.deepcopy(self._updates[:limit])

    async def _h_send_message(self, method: str, params: JSONDict, files: Uploads) -> Any:
        text, entities = self._formatted(params, "text", "entities")
        content: JSONDict = {"text": text, "entities": entities}
        if isinstance(params.get("link_preview_options"), dict):
            content["link_preview_options"] = params["link_preview_options"]
        return self._new_message(params, **content)

    async def _h_send_media(self, method: str, params: JSONDict, files: Uploads) -> Any:
        kind, type_name = _MEDIA_TYPES[method]
        caption, entities = self._formatted(params, "caption", "caption_entities")
        media = self._media_content(kind, type_name, params.get(kind), files)
        return self._new_message(params, **{kind: media, "caption": caption, "caption_entities": entities})

    async def _h_send_media_group(self, method: str, params: JSONDict, files: Uploads) -> Any:
        group_id = str(next(self._seq) + 10**12)
        messages = []
        for item in params["media"]:
            kind = item.get("type", "photo")
            type_name = _INPUT_MEDIA_KEYS.get(kind, "Document")
            caption, entities = self._formatted(item, "caption", "caption_entities")
            media = self._media_content(kind, type_name, item.get("media"), files)
            content = {kind if kind in _INPUT_MEDIA_KEYS else "document": media}
            messages.append(
                self._new_message(
                    params, media_group_id=group_id, caption=caption, caption_entities=entities, **content
                )
            )
        return messages

    async def _h_send_invoice(self, method: str, params: JSONDict, files: Uploads) -> Any:
        prices = params.get("prices") or []
        invoice = {
            "title": params["title"],
            "description": params["description"],
            "start_parameter": params.get("start_parameter", ""),
            "currency": params["currency"],
            "total_amount": sum(int(p.get("amount", 0)) for p in prices if isinstance(p, dict)),
        }
        return self._new_message(params, invoice=invoice)

    async def _h_send_dice(self, method: str, params: JSONDict, files: Uploads) -> Any:
        return self._new_message(params, dice={"emoji": params.get("emoji", "🎲"), "value": 1 + next(self._seq) % 6})

    async def _h_send_location(self, method: str, params: JSONDict, files: Uploads) -> Any:
        location = {"latitude": params["latitude"], "longitude": params["longitude"]}
        return self._new_message(params, location=location)

    async def _h_send_contact(self, method: str, params: JSONDict, files: Uploads) -> Any:
        contact = {k: params[k] for k in ("phone_number", "first_name", "last_name", "vcard") if k in params}
        return self._new_message(params, contact=contact)

    def _source_content(self, params: JSONDict) -> JSONDict:
        original = self._messages.get((str(self._resolve_chat_id(params["from_chat_id"])), params["message_id"]))
        if original is None:
            raise _ApiError(400, "Bad Request: message to copy not found")
        return {k: copy.deepcopy(v) for k, v in original.items() if k not in _ENVELOPE_KEYS}

    async def _h_copy_message(self, method: str, params: JSONDict, files: Uploads) -> Any:
        content = self._source_content(params)
        if "caption" in params:
            caption, entities = self._formatted(params, "caption", "caption_entities")
            content.update(caption=caption, caption_entities=entities)
        message = self._new_message(params, **content)
        return {"message_id": message["message_id"]}

    async def _h_forward_message(self, method: str, params: JSONDict, files: Uploads) -> Any:
        original = self._messages.get((str(self._resolve_chat_id(params["from_chat_id"])), params["message_id"]))
        content = self._source_content(params)
        sender = copy.deepcopy((original or {}).get("from", self.me))
        content["forward_origin"] = {
            "type": "user",
            "date": (original or {}).get("date", _now()),
            "sender_user": sender,
        }
        return self._new_message(params, **content)

    def _editable(self, params: JSONDict) -> JSONDict | None:
        """The stored message an edit targets; None for inline messages (which just answer True)."""
        if "inline_message_id" in params:
            return None
        key = (str(self._resolve_chat_id(params["chat_id"])), params["message_id"])
        message = self._messages.get(key)
        if message is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        if not self._is_own(message):
            raise _ApiError(400, "Bad Request: message can't be edited")
        return message

    def _commit_edit(self, message: JSONDict, changes: JSONDict, markup: Any) -> JSONDict:
        updated = copy.deepcopy(message)
        for key, value in changes.items():
            if value is None:
                updated.pop(key, None)
            else:
                updated[key] = value
        # Telegram drops the inline keyboard when an edit does not repeat it.
        updated.pop("reply_markup", None)
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            updated["reply_markup"] = copy.deepcopy(markup)
        if {k: v for k, v in updated.items() if k != "edit_date"} == {
            k: v for k, v in message.items() if k != "edit_date"
        }:
            raise _ApiError(400, NOT_MODIFIED)
        updated["edit_date"] = _now()
        self._store(updated)
        return copy.deepcopy(updated)

    async def _h_edit_text(self, method: str, params: JSONDict, files: Uploads) -> Any:
        message = self._editable(params)
        if message is None:
            return True
        if "text" not in message:
            raise _ApiError(400, "Bad Request: there is no text in the message to edit")
        text, entities = self._formatted(params, "text", "entities")
        changes: JSONDict = {"text": text, "entities": entities}
        if isinstance(params.get("link_preview_options"), dict):
            changes["link_preview_options"] = params["link_preview_options"]
        return self._commit_edit(message, changes, params.get("reply_markup"))

    async def _h_edit_caption(self, method: str, params: JSONDict, files: Uploads) -> Any:
        message = self._editable(params)
        if message is None:
            return True
        if "text" in message:
            raise _ApiError(400, "Bad Request: there is no caption in the message to edit")
        caption, entities = self._formatted(params, "caption", "caption_entities")
        return self._commit_edit(
            message, {"caption": caption, "caption_entities": entities}, params.get("reply_markup")
        )

    async def _h_edit_reply_markup(self, method: str, params: JSONDict, files: Uploads) -> Any:
        message = self._editable(params)
        if message is None:
            return True
        return self._commit_edit(message, {}, params.get("reply_markup"))

    async def _h_delete_message(self, method: str, params: JSONDict, files: Uploads) -> Any:
        chat_key = str(self._resolve_chat_id(params["chat_id"]))
        key = (chat_key, params["message_id"])
        if key in self._messages:
            del self._messages[key]
        elif key in self._deleted or params["message_id"] > self._last_message_id.get(chat_key, 0):
            raise _ApiError(400, "Bad Request: message to delete not found")
        self._deleted.add(key)
        return True

    async def _h_set_my_commands(self, method: str, params: JSONDict, files: Uploads) -> Any:
        key = (_scope_key(params.get("scope")), params.get("language_code", ""))
        self.commands[key] = copy.deepcopy(params["commands"])
        return True

    async def _h_get_my_commands(self, method: str, params: JSONDict, files: Uploads) -> Any:
        key = (_scope_key(params.get("scope")), params.get("language_code", ""))
        return copy.deepcopy(self.commands.get(key, []))

    async def _h_delete_my_commands(self, method: str, params: JSONDict, files: Uploads) -> Any:
        self.commands.pop((_scope_key(params.get("scope")), params.get("language_code", "")), None)
        return True

    async def _h_set_menu_button(self, method: str, params: JSONDict, files: Uploads) -> Any:
        self.menu_buttons[str(params.get("chat_id", ""))] = params.get("menu_button") or {"type": "default"}
        return True

    async def _h_get_menu_button(self, method: str, params: JSONDict, files: Uploads) -> Any:
        return self.menu_buttons.get(str(params.get("chat_id", "")), {"type": "commands"})

    async def _h_get_chat(self, method: str, params: JSONDict, files: Uploads) -> Any:
        info: JSONDict = self.spec.example("ChatFullInfo")
        info.update(self._chat(params["chat_id"]))
        info.update(accent_color_id=0, max_reaction_count=11)
        return info

    async def _h_get_chat_member(self, method: str, params: JSONDict, files: Uploads) -> Any:
        user_id = params["user_id"]
        user = self.me if user_id == self.bot_id else self._users.get(user_id)
        if user is None:
            user = {"id": user_id, "is_bot": False, "first_name": "User"}
        return self._chat_member("member", user)

    async def _h_get_file(self, method: str, params: JSONDict, files: Uploads) -> Any:
        file_id = params["file_id"]
        result: JSONDict = {"file_id": file_id, "file_unique_id": _unique_id(file_id)}
        if file_id in self._files:
            result.update(file_size=len(self._files[file_id]), file_path=f"files/{file_id}")
        return result

    async def _h_create_forum_topic(self, method: str, params: JSONDict, files: Uploads) -> Any:
        topic: JSONDict = {
            "message_thread_id": next(self._topic_ids),
            "name": params["name"],
            "icon_color": params.get("icon_color", DEFAULT_TOPIC_COLOR),
        }
        if "icon_custom_emoji_id" in params:
            topic["icon_custom_emoji_id"] = params["icon_custom_emoji_id"]
        return topic

    async def _h_get_webhook_info(self, method: str, params: JSONDict, files: Uploads) -> Any:
        return {"url": self.webhook_url, "has_custom_certificate": False, "pending_update_count": len(self._updates)}

    async def _h_set_webhook(self, method: str, params: JSONDict, files: Uploads) -> Any:
        self.webhook_url = params["url"]
        return True

    async def _h_delete_webhook(self, method: str, params: JSONDict, files: Uploads) -> Any:
        self.webhook_url = ""
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _h_create_invoice_link(self, method: str, params: JSONDict, files: Uploads) -> Any:
        link = f"https://t.me/$invoice{next(self._seq)}"
        invoice: JSONDict = {
            "payload": params["payload"],
            "currency": params["currency"],
            "total_amount": sum(price["amount"] for price in params["prices"]),
        }
        if "subscription_period" in params:
            invoice["subscription_period"] = params["subscription_period"]
        self.invoice_links[link] = invoice
        return link

    async def _h_edit_user_star_subscription(self, method: str, params: JSONDict, files: Uploads) -> Any:
        sub = self.subscriptions.get(str(params["telegram_payment_charge_id"]))
        if sub is None or sub["user_id"] != params["user_id"]:
            raise _ApiError(400, "Bad Request: CHARGE_ID_INVALID")
        sub["is_canceled"] = bool(params["is_canceled"])
        return True

    async def _h_refund_star_payment(self, method: str, params: JSONDict, files: Uploads) -> Any:
        charge = self.charges.get(str(params["telegram_payment_charge_id"]))
        if charge is None or charge["user_id"] != params["user_id"]:
            raise _ApiError(400, "Bad Request: CHARGE_NOT_FOUND")
        if charge["refunded"]:
            raise _ApiError(400, "Bad Request: CHARGE_ALREADY_REFUNDED")
        charge["refunded"] = True
        return True

    async def _h_export_invite_link(self, method: str, params: JSONDict, files: Uploads) -> Any:
        return f"https://t.me/+invite{next(self._seq)}"


def _scope_key(scope: Any) -> str:
    """Key of a command scope in :attr:`FakeTelegram.commands`: canonical JSON, default scope if absent."""
    return json.dumps(scope or {"type": "default"}, sort_keys=True, separators=(",", ":"))


FakeBotAPI = FakeTelegram
