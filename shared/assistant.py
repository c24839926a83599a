"""The model: OpenAI chat completions with the advisor's prompt and a handoff tool.

The SDK's own retries and timeouts are used, bounded by what is left of the request's budget.
Any failure raises AssistantError (AssistantTimeout for timeouts) for the caller's fallback.

Requests are laid out for the provider's prompt cache (it reuses the longest identical
prefix): the stable instructions first, the tool schema, then the conversation (which only
grows between trims, see private.history), and what changes every turn (the time, opening
hours) last. `prompt_cache_key` keeps one conversation's requests on one cache.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import openai
from openai import OpenAI
from openai.types.chat import ChatCompletion
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming

HANDOFF_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "handoff_to_human",
        "description": (
            "Hand the conversation to the human advisor: the customer asks for a person, "
            "is upset, or needs something the assistant cannot do."
        ),
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {
                "reason": {"type": "string", "description": "Why, in a few words."},
                "summary": {
                    "type": "string",
                    "description": (
                        "For the advisor, in the advisor's language, 2 to 4 lines: what the "
                        "customer wants, what was already answered, what to check."
                    ),
                },
            },
            "required": ["reason", "summary"],
            "additionalProperties": False,
        },
    },
}
TOOL_NAMES = ("handoff_to_human",)


class AssistantError(RuntimeError):
    pass


class AssistantTimeout(AssistantError):
    pass


@dataclass(frozen=True)
class Reply:
    text: str | None
    handoff_reason: str | None
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: int
    handoff_summary: str | None = None
    cached_tokens: int | None = None


def describe_media(item: dict[str, Any]) -> str:
    """One line telling the model what the customer attached."""
    if item.get("type") == "location":
        return f"[the customer shared a location: {item.get('latitude')}, {item.get('longitude')}]"
    kind = str(item.get("content_type") or "")
    if kind.startswith("audio/"):
        return "[the customer sent a voice note that could not be transcribed]"
    if kind.startswith("image/"):
        return "[the customer sent an image]"
    if kind.startswith("video/"):
        return "[the customer sent a video]"
    return f"[the customer sent a document ({kind or 'unknown type'})]"


def history_to_messages(
    history: list[dict[str, Any]], images: dict[str, list[str]] | None = None
) -> list[dict[str, Any]]:
    """Stored messages -> chat turns: the customer is the user, the AI and advisor the assistant.

    A voice note counts as the customer's words (its transcript); other media become one line
    each; `images` (message id -> URLs) are passed as image input for the current turn.
    """
    turns: list[dict[str, Any]] = []
    for message in history:
        if message.get("author") == "system":
            continue
        inbound = message.get("direction") == "inbound"
        parts = [message.get("transcript") or message.get("body") or ""]
        for item in message.get("media") or []:
            kind = str(item.get("content_type") or "")
            if inbound and not (kind.startswith("audio/") and message.get("transcript")):
                parts.append(describe_media(item))
        text = "\n".join(p for p in parts if p)
        urls = (images or {}).get(str(message.get("id")), []) if inbound else []
        if not text and not urls:
            continue
        content: Any = text
        if urls:
            content = [{"type": "text", "text": text or "[image]"}] + [
                {"type": "image_url", "image_url": {"url": url}} for url in urls
            ]
        turns.append({"role": "user" if inbound else "assistant", "content": content})
    return turns


class Assistant:
    def __init__(
        self,
        api_key: str,
        base_url: str | None,
        model: str,
        max_retries: int,
        timeout: float,
        transcription_model: str = "whisper-1",
        tts_model: str = "gpt-4o-mini-tts",
        tts_voice: str = "alloy",
    ) -> None:
        self.client = OpenAI(
            api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout
        )
        self.model = model
        self.timeout = timeout
        self.transcription_model = transcription_model
        self.tts_model = tts_model
        self.tts_voice = tts_voice

    def close(self) -> None:
        self.client.close()

    def transcribe(self, audio: bytes, content_type: str, timeout: float) -> str:
        """Speech to text (a voice note's words)."""
        extension = content_type.split("/")[-1].split(";")[0] or "ogg"
        try:
            # No retries: a voice note answered as text beats a late answer.
            result = self.client.with_options(max_retries=0).audio.transcriptions.create(
                model=self.transcription_model,
                file=(f"voice.{extension}", audio, content_type),
                timeout=timeout,
            )
        except openai.APITimeoutError as exc:
            raise AssistantTimeout("transcription timed out") from exc
        except openai.OpenAIError as exc:
            raise AssistantError(f"transcription failed: {type(exc).__name__}") from exc
        return str(result.text).strip()

    def speak(self, text: str, timeout: float) -> bytes:
        """Text to speech, as Ogg/Opus (what WhatsApp plays as a voice note)."""
        try:
            response = self.client.with_options(max_retries=0).audio.speech.create(
                model=self.tts_model,
                voice=self.tts_voice,
                input=text,
                response_format="opus",
                timeout=timeout,
            )
        except openai.APITimeoutError as exc:
            raise AssistantTimeout("speech timed out") from exc
        except openai.OpenAIError as exc:
            raise AssistantError(f"speech failed: {type(exc).__name__}") from exc
        return bytes(response.content)

    def reply(
        self,
        system_prompt: str,
        history: list[dict[str, Any]],
        timeout: float | None = None,
        images: dict[str, list[str]] | None = None,
        turn_context: str | None = None,
        cache_key: str | None = None,
    ) -> Reply:
        messages: list[Any] = [{"role": "system", "content": system_prompt}]
        messages += history_to_messages(history, images)
        if turn_context:  # last: it changes every turn, so it must not break the prefix
            messages.append({"role": "system", "content": turn_context})
        request: CompletionCreateParamsNonStreaming = {
            "model": self.model,
            "messages": messages,
            "tools": [HANDOFF_TOOL],  # type: ignore[list-item]
        }
        if cache_key:
            request["prompt_cache_key"] = cache_key
        started = time.monotonic()
        try:
            # The SDK's generic POST (documented for any endpoint): the same request, retries,
            # errors and parsed ChatCompletion as `chat.completions.create`, without the
            # create() input transform, which walks every message through the params' type
            # unions to convert nothing in our plain JSON (three quarters of the SDK's CPU
            # per reply with 20 messages of history; BENCHMARKS.md).
            completion = self.client.post(
                "/chat/completions",
                cast_to=ChatCompletion,
                body=request,
                options={"timeout": min(timeout or self.timeout, self.timeout)},
            )
        except openai.APITimeoutError as exc:
            raise AssistantTimeout("model timed out") from exc
        except openai.OpenAIError as exc:
            raise AssistantError(f"{type(exc).__name__}: {exc}"[:500]) from exc
        latency_ms = int((time.monotonic() - started) * 1000)
        if not completion.choices:
            raise AssistantError("model returned no choices")
        choice = completion.choices[0]
        handoff_reason = handoff_summary = None
        for call in choice.message.tool_calls or []:
            function = getattr(call, "function", None)
            if function is not None and function.name == "handoff_to_human":
                try:
                    arguments = json.loads(function.arguments or "{}")
                except json.JSONDecodeError:
                    arguments = {}
                handoff_reason = str(arguments.get("reason") or "customer asked for a person")
                handoff_summary = str(arguments.get("summary") or "").strip() or None
        text = (choice.message.content or "").strip() or None
        if text is None and handoff_reason is None:
            refusal = getattr(choice.message, "refusal", None)
            raise AssistantError(f"model gave no answer (refusal: {refusal!r})")
        usage = completion.usage
        details = usage.prompt_tokens_details if usage else None
        return Reply(
            text=text,
            handoff_reason=handoff_reason,
            model=completion.model or self.model,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            latency_ms=latency_ms,
            handoff_summary=handoff_summary,
            cached_tokens=details.cached_tokens if details else None,
        )
