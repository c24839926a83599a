from __future__ import annotations

import pytest

from shared.config import MissingSettingError, Settings


def test_missing_secret_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://localhost/x")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(MissingSettingError, match="TWILIO_AUTH_TOKEN"):
        settings.require("database_url", "twilio_auth_token")
    settings.require("database_url")


def test_environment_names_and_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BURST_WAIT_SECONDS", "0.25")
    monkeypatch.setenv("RATE_LIMIT_CUSTOMER_PER_MINUTE", "12")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.burst_wait_seconds == 0.25
    assert settings.rate_limit_customer_per_minute == 12
    monkeypatch.setenv("RATE_LIMIT_CUSTOMER_PER_MINUTE", "zero")
    with pytest.raises(ValueError, match="rate_limit_customer_per_minute"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_env_example_lists_every_setting() -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / ".env.example"
    names = {line.split("=", 1)[0] for line in example.read_text().splitlines() if "=" in line}
    names = {n.lstrip("# ").strip() for n in names}
    assert {name.upper() for name in Settings.model_fields} <= names
