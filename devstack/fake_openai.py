"""An OpenAI-compatible stand-in: `POST /v1/chat/completions` answered like OpenAI does.

Tests script it (text, handoff tool call, HTTP error, delay) and read what the model was sent.
Unscripted, it is the local stack's offline responder: a greeting, a few keyword answers and a
handoff when the customer asks for a person, marked as offline in every answer's model name.
"""

from __future__ import annotations

import json
import re
import threading
import time
import unicodedata
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from devstack.local_server import LocalServer, Request, Response

OFFLINE_MODEL = "offline-responder"
_HUMAN_WORDS = ("humano", "persona", "asesor", "human", "agent", "alguien real")
_KEYWORD_ANSWERS = {
    "precio": "Con gusto te comparto precios: dime qué producto te interesa y te envío la información.",
    "horario": "Atendemos de lunes a viernes de 8:00 a 18:00 y sábados de 9:00 a 13:00.",
    "gracias": "¡Con mucho gusto! Aquí estoy si necesitas algo más.",
}


@dataclass
class Step:
    kind: str  # "text" | "handoff" | "error"
    value: Any = None
    delay: float = 0.0
    hold: threading.Event | None = None  # answer only once the test sets it


def _plain(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def offline_step(messages: list[dict[str, Any]]) -> Step:
    """What the offline responder says to the last customer message: a handoff when asked for
    a person, else the best passage of the business's documents when the prompt carries one,
    else a few canned answers."""
    # The customer's latest turn: every message since the assistant last spoke (a burst).
    turn: list[str] = []
    for message in reversed(messages):
        if message.get("role") == "system":
            continue  # the per-turn context comes last
        if message.get("role") != "user":
            break
        turn.insert(0, str(message.get("content") or ""))
    text = _plain(" ".join(turn))
    if any(word in text for word in _HUMAN_WORDS):
        summary = "El cliente pidió hablar con una persona. Escribió: " + " / ".join(turn)
        return Step("handoff", ("the customer asked for a person", None, summary[:400]))
    context = str(messages[-1].get("content") or "") if messages else ""
    passage = re.search(r"^\[1\] [^:\n]*: (.+)$", context, re.MULTILINE)
    if messages and messages[-1].get("role") == "system" and passage:
        return Step("text", passage.group(1).strip())
    for keyword, answer in _KEYWORD_ANSWERS.items():
        if keyword in text:
            return Step("text", answer)
    if any(greeting in text for greeting in ("hola", "buenas", "hello", "hi")):
        return Step("text", "¡Hola! Soy el asistente virtual. ¿En qué puedo ayudarte hoy?")
    return Step("text", "Gracias por tu mensaje. Cuéntame un poco más para ayudarte mejor.")


class FakeOpenAI:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, model: str = OFFLINE_MODEL) -> None:
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self._script: deque[Step] = deque()
        self._audio_script: deque[Step] = deque()
        self.transcriptions: list[bytes] = []
        self.speeches: list[dict[str, Any]] = []
        self.speech_delay = 0.0
        # How long an unscripted completion takes (benchmarks give the model a latency).
        self.completion_delay = 0.0
        self.holds: list[threading.Event] = []
        self._cache: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self.server = LocalServer(self._serve, host, port)

    @property
    def base_url(self) -> str:
        return self.server.url + "/v1"

    def start(self) -> FakeOpenAI:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    # -- scripting ----------------------------------------------------------------------------
    def reply_with(self, text: str, delay: float = 0.0) -> None:
        self._script.append(Step("text", text, delay))

    def reply_when(self, text: str) -> threading.Event:
        """The next completion answers `text` only once the returned event is set: a model
        that is still thinking, for exactly as long as the test needs."""
        release = threading.Event()
        self.holds.append(release)
        self._script.append(Step("text", text, hold=release))
        return release

    def handoff(self, reason: str, text: str | None = None, summary: str = "") -> None:
        self._script.append(Step("handoff", (reason, text, summary)))

    def fail(self, status: int = 500, delay: float = 0.0) -> None:
        self._script.append(Step("error", status, delay))

    def transcribe_as(self, text: str, delay: float = 0.0) -> None:
        self._audio_script.append(Step("text", text, delay))

    # -- protocol -----------------------------------------------------------------------------
    def _serve(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path == "/v1/audio/transcriptions" and request.method == "POST":
            return self._transcription(request)
        if path == "/v1/audio/speech" and request.method == "POST":
            return self._speech(request)
        if path != "/v1/chat/completions" or request.method != "POST":
            return Response(
                404, {"error": {"message": "Not found", "type": "invalid_request_error"}}
            )
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return Response(
                401,
                {
                    "error": {
                        "message": "Missing API key",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )
        body = request.json()
        with self._lock:
            self.requests.append(body)
            step = self._script.popleft() if self._script else None
        if step is None:
            step = offline_step(body.get("messages", []))
            step.delay = self.completion_delay
        if step.delay:
            time.sleep(step.delay)
        if step.hold is not None:
            step.hold.wait(60)
        if step.kind == "error":
            return Response(
                int(step.value),
                {
                    "error": {
                        "message": "The server had an error",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
        return Response(200, self._completion(body, step))

    def _transcription(self, request: Request) -> Response:
        """Whisper-style: multipart upload in, {"text": ...} out."""
        if b'name="file"' not in request.body:
            return Response(
                400, {"error": {"message": "file is required", "type": "invalid_request_error"}}
            )
        with self._lock:
            self.transcriptions.append(request.body)
            step = (
                self._audio_script.popleft()
                if self._audio_script
                else Step("text", "(nota de voz)")
            )
        if step.delay:
            time.sleep(step.delay)
        return Response(200, {"text": step.value})

    def _speech(self, request: Request) -> Response:
        """Text to speech: answers Ogg/Opus bytes (a minimal Ogg page header stands in)."""
        body = request.json()
        with self._lock:
            self.speeches.append(body)
        if self.speech_delay:
            time.sleep(self.speech_delay)
        audio = b"OggS\x00\x02" + b"\x00" * 20 + str(body.get("input", "")).encode()
        return Response(200, audio, content_type="audio/ogg")

    def _completion(self, body: dict[str, Any], step: Step) -> dict[str, Any]:
        content: str | None
        tool_calls = None
        if step.kind == "handoff":
            reason, content, summary = step.value
            tool_calls = [
                {
                    "id": f"call_{uuid.uuid4().hex[:24]}",
                    "type": "function",
                    "function": {
                        "name": "handoff_to_human",
                        "arguments": json.dumps({"reason": reason, "summary": summary}),
                    },
                }
            ]
        else:
            content = str(step.value)
        prompt_tokens = sum(
            len(str(m.get("content", ""))) // 4 + 1 for m in body.get("messages", [])
        )
        cached_tokens = self._cached_tokens(body, prompt_tokens)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model
            if self.model != OFFLINE_MODEL
            else body.get("model", "") + f" ({OFFLINE_MODEL})",
            "choices": [
                {
                    "index": 0,
                    # As OpenAI answers: tool_calls only when the model calls a tool.
                    "message": {
                        "role": "assistant",
                        "content": content,
                        "refusal": None,
                        "annotations": [],
                        **({"tool_calls": tool_calls} if tool_calls else {}),
                    },
                    "logprobs": None,
                    "finish_reason": "tool_calls" if tool_calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(content or "") // 4 + 1,
                "total_tokens": prompt_tokens + len(content or "") // 4 + 1,
                "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": "fp_local",
        }

    def _cached_tokens(self, body: dict[str, Any], prompt_tokens: int) -> int:
        """As OpenAI's prompt cache: prompts of 1,024+ tokens reuse the longest prefix (of
        whole messages here, in 128-token steps) shared with an earlier request of the same
        `prompt_cache_key`."""
        key = body.get("prompt_cache_key")
        messages = body.get("messages", [])
        with self._lock:
            earlier = self._cache.get(key) if key else None
            if key:
                self._cache[key] = messages
        if not earlier or prompt_tokens < 1024:
            return 0
        shared = 0
        for mine, theirs in zip(messages, earlier, strict=False):
            if mine != theirs:
                break
            shared += len(str(mine.get("content", ""))) // 4 + 1
        return shared // 128 * 128

    def user_turns(self, index: int = -1) -> list[Any]:
        """The customer messages the model saw in one request."""
        return [m["content"] for m in self.requests[index]["messages"] if m["role"] == "user"]
