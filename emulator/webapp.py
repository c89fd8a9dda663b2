"""Signed Mini App launch data, as Telegram makes it: for the offline demo's app links and the browser tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import quote, urlencode


def init_data(token: str, user: dict[str, object], *, auth_date: int | None = None, **extra: str) -> str:
    """``initData`` for ``user`` signed with the bot's token (Telegram's algorithm for validating Mini App data)."""
    fields = {
        "user": json.dumps(user, separators=(",", ":"), ensure_ascii=False),
        "auth_date": str(int(time.time()) if auth_date is None else auth_date),
        "query_id": "AAF-stand-in",
        **extra,
    }
    check = "\n".join(f"{key}={value}" for key, value in sorted(fields.items()))
    secret = hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()
    fields["hash"] = hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()
    return urlencode(fields, quote_via=quote)


LIGHT = {
    "bg_color": "#ffffff",
    "text_color": "#000000",
    "hint_color": "#999999",
    "link_color": "#2481cc",
    "button_color": "#2481cc",
    "button_text_color": "#ffffff",
    "secondary_bg_color": "#efeff3",
}
DARK = {
    "bg_color": "#17212b",
    "text_color": "#f5f5f5",
    "hint_color": "#708499",
    "link_color": "#6ab3f3",
    "button_color": "#5288c1",
    "button_text_color": "#ffffff",
    "secondary_bg_color": "#232e3c",
}


def launch_url(app_url: str, data: str, *, dark: bool = False, screen: str | None = None) -> str:
    """The app's URL as Telegram opens it: launch data and theme in the fragment."""
    fragment = urlencode(
        {
            "tgWebAppData": data,
            "tgWebAppVersion": "8.0",
            "tgWebAppPlatform": "stand-in",
            "tgWebAppThemeParams": json.dumps(DARK if dark else LIGHT, separators=(",", ":")),
            "tgWebAppColorScheme": "dark" if dark else "light",
        },
        quote_via=quote,
    )
    query = f"?screen={screen}" if screen else ""
    return f"{app_url}{query}#{fragment}"
