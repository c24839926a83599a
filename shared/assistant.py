"""The model: OpenAI chat completions with the advisor's prompt and a handoff tool.

The SDK's own retries and timeouts are used, bounded by what is left of the request's budget.
Any failure raises AssistantError (AssistantTimeout for timeouts) for the caller's fallback.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import openai
from openai import OpenAI

HANDOFF_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "handoff_to_human",
        "description": (
            "Hand the conversation to the human advisor: the customer asks for a person, "
            "is upset, or needs something the assistant cannot do."
        ),
        "parameters": {
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "Why, in a few words."}},
            "required": ["reason"],
        },
    },
}


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


def history_to_messages(history: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Stored messages -> chat turns: the customer is the user, the AI and advisor the assistant."""
    turns: list[dict[str, str]] = []
    for message in history:
        if message.get("author") == "system":
            continue
        text = message.get("transcript") or message.get("body") or ""
        if not text and message.get("media"):
            text = "[the customer sent an attachment]"
        if not text:
            continue
        role = "user" if message.get("direction") == "inbound" else "assistant"
        turns.append({"role": role, "content": text})
    return turns


class Assistant:
    def __init__(
        self, api_key: str, base_url: str | None, model: str, max_retries: int, timeout: float
    ) -> None:
        self.client = OpenAI(
            api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout
        )
        self.model = model
        self.timeout = timeout

    def reply(
        self, system_prompt: str, history: list[dict[str, Any]], timeout: float | None = None
    ) -> Reply:
        messages: list[Any] = [{"role": "system", "content": system_prompt}]
        messages += history_to_messages(history)
        started = time.monotonic()
        try:
            completion = self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                tools=[HANDOFF_TOOL],  # type: ignore[list-item]
                timeout=min(timeout or self.timeout, self.timeout),
            )
        except openai.APITimeoutError as exc:
            raise AssistantTimeout("model timed out") from exc
        except openai.OpenAIError as exc:
            raise AssistantError(f"{type(exc).__name__}: {exc}"[:500]) from exc
        latency_ms = int((time.monotonic() - started) * 1000)
        if not completion.choices:
            raise AssistantError("model returned no choices")
        choice = completion.choices[0]
        handoff_reason = None
        for call in choice.message.tool_calls or []:
            function = getattr(call, "function", None)
            if function is not None and function.name == "handoff_to_human":
                try:
                    handoff_reason = str(json.loads(function.arguments or "{}").get("reason", ""))
                except json.JSONDecodeError:
                    handoff_reason = ""
                handoff_reason = handoff_reason or "customer asked for a person"
        text = (choice.message.content or "").strip() or None
        if text is None and handoff_reason is None:
            refusal = getattr(choice.message, "refusal", None)
            raise AssistantError(f"model gave no answer (refusal: {refusal!r})")
        usage = completion.usage
        return Reply(
            text=text,
            handoff_reason=handoff_reason,
            model=completion.model or self.model,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            latency_ms=latency_ms,
        )
