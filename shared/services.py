"""The clients a function instance uses, created once per instance (lazily, on first request)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.assistant import Assistant
from shared.config import Settings, get_settings
from shared.db import Database
from shared.routing import Router
from shared.storage import Storage
from shared.upstash import Upstash
from shared.whatsapp import WhatsApp


@dataclass
class Services:
    settings: Settings
    db: Database
    upstash: Upstash | None
    router: Router
    whatsapp: WhatsApp
    assistant: Assistant
    storage: Storage | None = None
    # How the burst wait waits; tests replace it to order messages with events, not time.
    sleep: Callable[[float], None] = field(default=time.sleep)
    # What time it is for business hours; tests fix it.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def close(self) -> None:
        """Release every connection (instances never need this; tests and tools do)."""
        self.db.close()
        for client in (self.upstash, self.whatsapp, self.assistant, self.storage):
            if client is not None:
                client.close()

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        settings.require("database_url", "twilio_account_sid", "twilio_auth_token")
        secret = settings.secret
        db = Database(
            secret(settings.database_url),
            settings.database_pool_size,
            settings.database_timeout_seconds,
        )
        upstash = None
        if settings.upstash_redis_rest_url and settings.upstash_redis_rest_token:
            upstash = Upstash(
                settings.upstash_redis_rest_url,
                secret(settings.upstash_redis_rest_token),
                settings.redis_timeout_seconds,
            )
        status_callback = (
            settings.webhook_public_url.rstrip("/") + "/status"
            if settings.webhook_public_url
            else None
        )
        overrides = settings.twilio_connection_overrides
        storage = None
        if settings.supabase_url and settings.supabase_service_role_key:
            storage = Storage(
                settings.supabase_url,
                secret(settings.supabase_service_role_key),
                settings.storage_bucket,
                settings.storage_timeout_seconds,
            )
        return cls(
            storage=storage,
            settings=settings,
            db=db,
            upstash=upstash,
            router=Router(db, upstash, settings.routing_cache_seconds),
            whatsapp=WhatsApp(
                settings.twilio_account_sid or "",
                secret(settings.twilio_auth_token),
                status_callback,
                overrides,
                settings.twilio_timeout_seconds,
                settings.twilio_api_base_url,
            ),
            assistant=Assistant(
                secret(settings.openai_api_key),
                settings.openai_base_url,
                settings.openai_model,
                settings.openai_max_retries,
                settings.openai_timeout_seconds,
                settings.transcription_model,
                settings.tts_model,
                settings.tts_voice,
            ),
        )


_services: Services | None = None
_lock = threading.Lock()


def get_services() -> Services:
    global _services
    if _services is None:
        with _lock:
            if _services is None:
                _services = Services.from_settings(get_settings())
    return _services


class Deadline:
    """What is left of a request's time budget."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.ends - time.monotonic())

    def within(self, seconds: float) -> Deadline:
        """A deadline at most `seconds` away that never outlasts this one."""
        part = Deadline(seconds)
        part.ends = min(part.ends, self.ends)
        return part
