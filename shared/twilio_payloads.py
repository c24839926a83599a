"""Typed views of the forms Twilio posts: an inbound WhatsApp message and a status callback."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.whatsapp import bare_number

M = TypeVar("M", bound=BaseModel)


class PayloadError(ValueError):
    """The form is not what Twilio sends; the message says which field and why."""


class Media(BaseModel):
    url: str
    content_type: str | None = None


class InboundMessage(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    message_sid: str = Field(alias="MessageSid", min_length=10, max_length=64)
    from_: str = Field(alias="From", min_length=3)
    to: str = Field(alias="To", min_length=3)
    body: str = Field(default="", alias="Body", max_length=4096)
    num_media: int = Field(default=0, alias="NumMedia", ge=0, le=10)
    profile_name: str | None = Field(default=None, alias="ProfileName", max_length=256)
    wa_id: str | None = Field(default=None, alias="WaId")
    latitude: float | None = Field(default=None, alias="Latitude")
    longitude: float | None = Field(default=None, alias="Longitude")
    media: list[Media] = Field(default_factory=list)

    @field_validator("from_", "to")
    @classmethod
    def _phone(cls, value: str) -> str:
        number = bare_number(value)
        if not (number.startswith("+") and number[1:].isdigit() and 6 <= len(number) <= 16):
            raise ValueError("must be a WhatsApp address like whatsapp:+14155238886")
        return number

    @property
    def customer_phone(self) -> str:
        return self.from_

    @property
    def advisor_number(self) -> str:
        return self.to

    @classmethod
    def from_form(cls, form: dict[str, str]) -> InboundMessage:
        data: dict[str, Any] = dict(form)
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
    error_message: str | None = Field(default=None, alias="ErrorMessage", max_length=500)

    @field_validator("error_code", mode="before")
    @classmethod
    def _blank_code(cls, value: Any) -> Any:
        return None if value in ("", None) else value

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
