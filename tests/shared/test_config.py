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


SECRETS = {
    "DATABASE_URL": "postgresql://assistant_fn:s3cr3t-Pa55@db.example.co:6543/postgres",
    "TWILIO_AUTH_TOKEN": "9f1c2e7d4b6a8c0e1f3a5b7d9e2c4a6b",
    "OPENAI_API_KEY": "sk-proj-Zx81kLmNq",
    "CLEANUP_TOKEN": "Zm9vYmFyYmF6cXV4",
}


def test_secrets_never_show_in_a_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    shown = repr(settings) + str(settings.model_dump())
    assert not any(value in shown for value in SECRETS.values())
    assert Settings.secret(settings.twilio_auth_token) == SECRETS["TWILIO_AUTH_TOKEN"]
    assert Settings.secret(None) == ""


@pytest.mark.parametrize(
    ("name", "dev_value"),
    [("DATABASE_URL", "postgresql://assistant_fn:dev-password@127.0.0.1:5432/postgres"),
     ("OPENAI_API_KEY", "sk-dev-not-a-real-key"), ("CLEANUP_TOKEN", "dev-cleanup-token"),
     ("UPSTASH_REDIS_REST_TOKEN", "dev-upstash-token")],
)  # fmt: skip
def test_production_refuses_the_development_values(
    monkeypatch: pytest.MonkeyPatch, name: str, dev_value: str
) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ENVIRONMENT", "production")
    Settings(_env_file=None)  # type: ignore[call-arg]  # real-looking values pass
    monkeypatch.setenv(name, dev_value)
    with pytest.raises(ValueError, match=f"development values refused.*{name}"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("ENVIRONMENT", "development")
    Settings(_env_file=None)  # type: ignore[call-arg]  # fine outside production


def test_every_example_value_is_refused_in_production() -> None:
    from pathlib import Path

    from dotenv import dotenv_values

    example = dotenv_values(Path(__file__).resolve().parents[2] / ".env.example")
    values = {k: v for k, v in example.items() if v}
    with pytest.raises(ValueError, match="development values refused") as refused:
        Settings(_env_file=None, **{**values, "ENVIRONMENT": "production"})  # type: ignore[call-arg,arg-type]
    secrets = {
        n.upper() for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)
    }
    assert {s for s in secrets if values.get(s)} <= set(
        str(refused.value).replace(",", " ").split()
    )


def test_the_example_file_as_is_is_valid_settings() -> None:
    """`cp .env.example .env` works: its empty values (no alert template, no Sentry) mean unset."""
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / ".env.example"
    settings = Settings(_env_file=example)  # type: ignore[call-arg]
    assert settings.advisor_alert_content_sid is None and settings.sentry_dsn is None
    assert settings.environment == "development" and settings.knowledge_top_k == 4
