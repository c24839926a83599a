"""Typed views of the forms Twilio posts: an inbound WhatsApp message and a status callback."""

from __future__ import annotations

import math
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.texts import clean_text
from shared.whatsapp import bare_number

M = TypeVar("M", bound=BaseModel)


class PayloadError(ValueError):
    """The form is not what Twilio sends; the message says which field and why."""


# The same rules as the database's checks (conversations.customer_phone, advisors'
# twilio_phone_number): ASCII digits only, so nothing Python accepts is refused by Postgres.
CUSTOMER_PHONE = re.compile(r"\+[0-9]{6,15}")
ADVISOR_NUMBER = re.compile(r"\+[1-9][0-9]{6,14}")
# A longer body is stored cut, with this marker: never refused (Twilio does not resend a 4xx).
MAX_BODY_CHARS = 16_000
TRUNCATED = " […]"
MAX_ERROR_CODE = 2**31 - 1


class Media(BaseModel):
    url: str
    content_type: str | None = None


class InboundMessage(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    message_sid: str = Field(
        alias="MessageSid", min_length=10, max_length=64, pattern=r"^[A-Za-z0-9]+$"
    )
    from_: str = Field(alias="From", min_length=3)
    to: str = Field(alias="To", min_length=3)
    body: str = Field(default="", alias="Body")
    num_media: int = Field(default=0, alias="NumMedia", ge=0, le=10)
    profile_name: str | None = Field(default=None, alias="ProfileName")
    wa_id: str | None = Field(default=None, alias="WaId")
    latitude: float | None = Field(default=None, alias="Latitude")
    longitude: float | None = Field(default=None, alias="Longitude")
    media: list[Media] = Field(default_factory=list)
    # The form as Twilio posted it (control characters removed), for rows that keep it whole.
    raw: dict[str, str] = Field(default_factory=dict, exclude=True)

    @field_validator("from_")
    @classmethod
    def _customer(cls, value: str) -> str:
        number = bare_number(value)
        if not CUSTOMER_PHONE.fullmatch(number):
            raise ValueError("must be a WhatsApp address like whatsapp:+573001112233")
        return number

    @field_validator("to")
    @classmethod
    def _advisor(cls, value: str) -> str:
        number = bare_number(value)
        if not ADVISOR_NUMBER.fullmatch(number):
            raise ValueError("must be a WhatsApp address like whatsapp:+14155238886")
        return number

    @field_validator("body", mode="before")
    @classmethod
    def _body(cls, value: Any) -> Any:
        text = clean_text(str(value or ""))
        return text if len(text) <= MAX_BODY_CHARS else text[:MAX_BODY_CHARS] + TRUNCATED

    @field_validator("profile_name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        return clean_text(str(value))[:256] or None if value is not None else None

    @field_validator("latitude", "longitude", mode="after")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        # nan and inf are not JSON: such a location is no location.
        return value if value is not None and math.isfinite(value) and abs(value) <= 180 else None

    @property
    def customer_phone(self) -> str:
        return self.from_

    @property
    def advisor_number(self) -> str:
        return self.to

    @classmethod
    def from_form(cls, form: dict[str, str]) -> InboundMessage:
        data: dict[str, Any] = dict(form)
        data["raw"] = {key: clean_text(str(value)) for key, value in form.items()}
        try:
            count = min(int(form.get("NumMedia") or 0), 10)
        except ValueError:
            count = 0
        data["media"] = [
            {"url": form[f"MediaUrl{i}"], "content_type": form.get(f"MediaContentType{i}")}
            for i in range(count)
            if form.get(f"MediaUrl{i}")
        ]
        return _parse(cls, data)

    def media_json(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = [
            {"twilio_url": m.url, "content_type": m.content_type} for m in self.media
        ]
        if self.latitude is not None and self.longitude is not None:
            items.append(
                {"type": "location", "latitude": self.latitude, "longitude": self.longitude}
            )
        return items


class StatusCallback(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    message_sid: str = Field(alias="MessageSid", min_length=10, max_length=64)
    message_status: str = Field(alias="MessageStatus", min_length=1, max_length=32)
    error_code: int | None = Field(default=None, alias="ErrorCode")
    error_message: str | None = Field(default=None, alias="ErrorMessage")

    @field_validator("error_code", mode="before")
    @classmethod
    def _code(cls, value: Any) -> Any:
        # Blank, or beyond what the database's integer holds: no code (the message keeps it).
        try:
            code = int(str(value).strip())
        except ValueError:
            return None
        return code if 0 <= code <= MAX_ERROR_CODE else None

    @field_validator("error_message", mode="before")
    @classmethod
    def _message(cls, value: Any) -> Any:
        return clean_text(str(value))[:500] or None if value is not None else None

    @classmethod
    def from_form(cls, form: dict[str, str]) -> StatusCallback:
        return _parse(cls, dict(form))


def _parse(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise PayloadError(reasons) from exc
