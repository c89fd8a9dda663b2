"""The HTTP adapter: health, readiness, metrics, Telegram's webhook, and the purchases API with its OpenAPI document."""
