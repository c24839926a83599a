"""Media: inbound attachments to Supabase Storage, voice-note transcription, voice replies.

Object names start with tenant and advisor ids (`<tenant>/<advisor>/<conversation>/<message>/
<n>.<ext>`), which is what the Storage RLS policy checks. Every step is bounded by its own
timeout and the request's deadline; a failure is recorded on the item, never raised, so the
message is kept and the cleanup sweep can retry.
"""

from __future__ import annotations

import mimetypes
import uuid
from dataclasses import dataclass, field
from typing import Any

from shared.assistant import AssistantError
from shared.observability import get_logger
from shared.routing import Advisor
from shared.services import Deadline, Services
from shared.whatsapp import MediaTooLarge

log = get_logger(__name__)

_EXTENSIONS = {
    "audio/ogg": "ogg", "audio/opus": "opus", "audio/mpeg": "mp3", "audio/mp4": "m4a",
    "audio/amr": "amr", "audio/aac": "aac", "image/jpeg": "jpg", "image/png": "png",
    "image/webp": "webp", "video/mp4": "mp4", "application/pdf": "pdf",
}  # fmt: skip
_DONE = {"stored", "too_large"}
# Seconds kept for answering after media work.
_RESERVE = 4.0


def extension_for(content_type: str) -> str:
    guessed = mimetypes.guess_extension(content_type) or ".bin"
    return _EXTENSIONS.get(content_type, guessed.lstrip("."))


def is_voice(item: dict[str, Any]) -> bool:
    return str(item.get("content_type") or "").startswith("audio/")


@dataclass
class MediaOutcome:
    media: list[dict[str, Any]]
    transcript: str | None = None
    image_urls: list[str] = field(default_factory=list)


def store_inbound_media(
    services: Services,
    tenant_id: str,
    advisor_id: str,
    conversation_id: str,
    message_id: str,
    media: list[dict[str, Any]],
    deadline: Deadline,
) -> MediaOutcome:
    """Download each attachment from Twilio, store it, transcribe voice notes."""
    settings = services.settings
    outcome = MediaOutcome([dict(item) for item in media])
    for n, item in enumerate(outcome.media):
        if (
            item.get("type") == "location"
            or item.get("status") in _DONE
            or not item.get("twilio_url")
        ):
            continue
        if deadline.remaining() - _RESERVE < 1.0:
            # Out of time for this request: the reply comes first, the sweep fetches the rest.
            item.update(status="failed", error="deferred: no time left in the request")
            continue
        timeout = min(settings.media_timeout_seconds, deadline.remaining() - _RESERVE)
        try:
            data, served_type = services.whatsapp.download_media(
                item["twilio_url"], settings.media_max_bytes, timeout
            )
        except MediaTooLarge as exc:
            item.update(status="too_large", size=exc.size)
            item.pop("error", None)
            log.warning(
                "media over the size limit, not stored", message_id=message_id, size=exc.size
            )
            continue
        except Exception as exc:
            item.update(status="failed", error=f"download: {type(exc).__name__}: {exc}"[:300])
            log.warning("media download failed", message_id=message_id, error=item["error"])
            continue
        content_type = item.get("content_type") or served_type
        path = f"{tenant_id}/{advisor_id}/{conversation_id}/{message_id}/{n}.{extension_for(content_type)}"
        item.update(content_type=content_type, size=len(data))
        try:
            if services.storage is None:
                raise RuntimeError("storage not configured")
            services.storage.upload(path, data, content_type)
            item.update(status="stored", path=path)
            item.pop("error", None)
        except Exception as exc:
            item.update(status="failed", error=f"upload: {type(exc).__name__}: {exc}"[:300])
            log.warning("media upload failed", message_id=message_id, error=item["error"])
        if is_voice(item) and outcome.transcript is None:
            outcome.transcript = _transcribe(services, data, content_type, deadline, message_id)
        if (
            content_type.startswith("image/")
            and settings.model_supports_images
            and item.get("path")
        ):
            try:
                outcome.image_urls.append(
                    services.storage.signed_url(path, settings.signed_url_seconds)  # type: ignore[union-attr]
                )
            except Exception as exc:
                log.warning("could not sign an image for the model", error=str(exc))
    return outcome


def _transcribe(
    services: Services, data: bytes, content_type: str, deadline: Deadline, message_id: str
) -> str | None:
    timeout = min(services.settings.transcription_timeout_seconds, deadline.remaining() - _RESERVE)
    if timeout <= 0.5:
        return None
    try:
        return services.assistant.transcribe(data, content_type, timeout) or None
    except AssistantError as exc:
        log.warning("voice note not transcribed, answering without it", message_id=message_id,
                    error=str(exc))  # fmt: skip
        return None


def last_inbound_is_voice(history: list[dict[str, Any]]) -> bool:
    last = next((m for m in reversed(history) if m.get("direction") == "inbound"), None)
    return bool(last and any(is_voice(item) for item in last.get("media") or []))


def voice_reply(
    services: Services, advisor: Advisor, conversation_id: str, text: str, deadline: Deadline
) -> dict[str, Any] | None:
    """Speak the reply, store it, and return the media item with a URL Twilio can fetch."""
    settings = services.settings
    timeout = min(settings.tts_timeout_seconds, deadline.remaining() - _RESERVE / 2)
    if services.storage is None or timeout <= 0.5:
        return None
    try:
        audio = services.assistant.speak(text, timeout)
        path = f"{advisor.tenant_id}/{advisor.id}/{conversation_id}/replies/{uuid.uuid4().hex}.ogg"
        services.storage.upload(path, audio, "audio/ogg")
        url = services.storage.signed_url(path, settings.signed_url_seconds)
    except Exception as exc:
        log.warning(
            "voice reply skipped, text already answers", error=f"{type(exc).__name__}: {exc}"
        )
        return None
    return {
        "path": path,
        "content_type": "audio/ogg",
        "size": len(audio),
        "status": "stored",
        "url": url,
    }
