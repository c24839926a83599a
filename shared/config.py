"""Settings: one pydantic-settings object, read from the environment (and `.env` locally).

Every setting has the environment variable's name. Secrets default to None; each function
declares the ones it needs (`Settings.require`) and fails at cold start naming any missing one.
Secrets are `SecretStr` (a repr or a log line never shows them), and with ENVIRONMENT=production
the development values of `.env.example` (`dev-…`) are refused.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# How much longer than a request's budget a conversation's turn is held.
LOCK_MARGIN_SECONDS = 5.0
# The mark of the development values in .env.example and the local stack ("dev-password",
# "sk-dev-…", "dev-cleanup-token").
_DEV_VALUE = re.compile(r"(?:^|[-:/_])dev-")


class MissingSettingError(RuntimeError):
    """A setting a function needs is not configured."""


class Settings(BaseSettings):
    # An empty variable (`ADVISOR_ALERT_CONTENT_SID=` in a copied .env.example) means unset.
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        env_ignore_empty=True,
    )

    # development, test or production (also Sentry's environment).
    environment: Literal["development", "test", "production"] = "development"

    # Services
    database_url: SecretStr | None = None
    database_pool_size: int = Field(default=4, ge=1)
    database_timeout_seconds: float = Field(default=5.0, gt=0)
    upstash_redis_rest_url: str | None = None
    upstash_redis_rest_token: SecretStr | None = None
    redis_timeout_seconds: float = Field(default=0.5, gt=0)
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    # Only for the local emulator; production leaves it unset (api.twilio.com).
    twilio_api_base_url: str | None = None
    twilio_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_public_url: str | None = None
    # Twilio's connection overrides (a URL fragment): retry 5xx and timeouts, not only failed
    # connections. Configure the same on the Twilio side (see README); status callback URLs we
    # set carry it too.
    twilio_connection_overrides: str = "rc=3&rp=all"
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_timeout_seconds: float = Field(default=8.0, gt=0)
    # No hidden retries: a retry with a fresh timeout would run past the request's deadline.
    openai_max_retries: int = Field(default=0, ge=0)
    sentry_dsn: SecretStr | None = None
    supabase_url: str | None = None
    supabase_service_role_key: SecretStr | None = None
    storage_bucket: str = "whatsapp-media"
    # Media: WhatsApp allows 16 MB; larger files are refused without failing the message.
    media_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    media_timeout_seconds: float = Field(default=5.0, gt=0)
    # Signed URLs handed to Twilio (voice replies) and to the model (images).
    signed_url_seconds: int = Field(default=3600, ge=60)
    transcription_model: str = "whisper-1"
    transcription_timeout_seconds: float = Field(default=6.0, gt=0)
    tts_model: str = "gpt-4o-mini-tts"
    tts_voice: str = "alloy"
    tts_timeout_seconds: float = Field(default=6.0, gt=0)
    # Pass customers' images to the model as image input (the model must support it).
    model_supports_images: bool = True
    storage_timeout_seconds: float = Field(default=10.0, gt=0)
    supabase_jwt_secret: SecretStr | None = None
    # Asymmetric JWT signing keys; defaults to SUPABASE_URL + /auth/v1/.well-known/jwks.json.
    supabase_jwks_url: str | None = None
    supabase_jwt_audience: str = "authenticated"
    cleanup_token: SecretStr | None = None
    google_cloud_project: str | None = None

    # Behaviour
    rate_limit_customer_per_minute: int = Field(default=30, ge=1)
    rate_limit_advisor_per_minute: int = Field(default=600, ge=1)
    routing_cache_seconds: float = Field(default=15.0, ge=0)
    burst_wait_seconds: float = Field(default=1.5, ge=0)
    conversation_lock_seconds: float = Field(default=20.0, gt=0)
    request_budget_seconds: float = Field(default=13.0, gt=0)
    handoff_hours: float = Field(default=24.0, gt=0)
    history_limit: int = Field(default=20, ge=1, le=100)
    notify_advisor_on_handoff: bool = True
    # Passages of the knowledge base given to the model per turn (0: none).
    knowledge_top_k: int = Field(default=4, ge=0, le=20)
    # WhatsApp's typing indicator (and read receipt) when the AI starts a turn.
    typing_indicator: bool = True
    # An approved WhatsApp template (Content SID) for handoff alerts, variables {{1}} customer
    # and {{2}} reason. Without it the alert goes as free text, only inside the advisor's window.
    advisor_alert_content_sid: str | None = Field(default=None, pattern=r"^HX[0-9a-fA-F]{32}$")
    retention_days: int = Field(default=90, ge=1)
    # Audit events are kept this long (the cleanup removes older ones).
    audit_retention_days: int = Field(default=365, ge=1)
    # A customer export larger than this goes to Storage behind a signed URL.
    export_inline_max_bytes: int = Field(default=5_000_000, ge=1)
    cleanup_batch_size: int = Field(default=5000, ge=1)
    cleanup_budget_seconds: float = Field(default=240.0, gt=0)
    recovery_min_age_seconds: int = Field(default=120, ge=1)
    recovery_max_age_seconds: int = Field(default=3600, ge=60)
    recovery_batch_size: int = Field(default=20, ge=1)
    resend_max_attempts: int = Field(default=5, ge=1)
    resend_backoff_seconds: int = Field(default=60, ge=1)
    send_rate_limit_per_minute: int = Field(default=60, ge=1)
    # Dashboard origins allowed to call the send function from a browser (comma-separated).
    dashboard_origins: str = ""
    # How long a thread may hold the GIL while others wait (Python's default: 5 ms). A request
    # back from Postgres, Redis or Twilio waits for it at each step; shorter keeps the time to
    # reply from queueing behind busy threads (BENCHMARKS.md, section 11).
    gil_switch_interval_ms: float = Field(default=1.0, gt=0, le=100)

    @model_validator(mode="after")
    def _lock_outlives_the_budget(self) -> Settings:
        # A hold that lapsed mid-turn would let a second instance start the same turn.
        if self.conversation_lock_seconds < self.request_budget_seconds + LOCK_MARGIN_SECONDS:
            raise ValueError(
                f"CONVERSATION_LOCK_SECONDS must be at least REQUEST_BUDGET_SECONDS + "
                f"{LOCK_MARGIN_SECONDS:g} ({self.request_budget_seconds + LOCK_MARGIN_SECONDS:g})"
            )
        return self

    @model_validator(mode="after")
    def _no_dev_secrets_in_production(self) -> Settings:
        if self.environment != "production":
            return self
        dev = [
            name.upper()
            for name, value in self
            if isinstance(value, SecretStr) and _DEV_VALUE.search(value.get_secret_value())
        ]
        if dev:
            raise ValueError(
                "development values refused with ENVIRONMENT=production: " + ", ".join(dev)
            )
        return self

    @property
    def allowed_origins(self) -> set[str]:
        return {o.strip().rstrip("/") for o in self.dashboard_origins.split(",") if o.strip()}

    @property
    def jwks_url(self) -> str | None:
        if self.supabase_jwks_url:
            return self.supabase_jwks_url
        if self.supabase_url:
            return self.supabase_url.rstrip("/") + "/auth/v1/.well-known/jwks.json"
        return None

    @staticmethod
    def secret(value: SecretStr | None) -> str:
        """A secret's value ("" when unset)."""
        return value.get_secret_value() if value is not None else ""

    def require(self, *names: str) -> None:
        missing = [name.upper() for name in names if not getattr(self, name.lower())]
        if missing:
            raise MissingSettingError("missing required setting(s): " + ", ".join(missing))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
