"""The model's reply is checked before it goes out; a rejected reply is never sent (the caller
sends the fallback and records why).

Rejected: an empty reply; a reply that quotes the instructions or names a tool; a reply in
another language than the advisor's when the customer wrote in the advisor's language (both
identified with confidence by py3langid, limited to the languages advisors use).
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

from shared.assistant import TOOL_NAMES
from shared.texts import GLOBAL_INSTRUCTIONS

LANGUAGES = ["es", "en", "pt", "fr", "it", "de"]
# Shorter texts, or less confident answers, say too little about their language.
_MIN_CHARS = 20
_MIN_CONFIDENCE = 0.9
# A run of this many words of the instructions in a reply is a leak, not a coincidence.
_LEAK_WORDS = 8
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)
    identifier.set_languages(LANGUAGES)
    return identifier


def language_of(text: str) -> str | None:
    """The text's language when it is long enough to tell and the model is confident."""
    if len(text.strip()) < _MIN_CHARS:
        return None
    with _lock:  # loaded once per instance (under a second), then shared
        language, confidence = _identifier().classify(text)
    return str(language) if confidence >= _MIN_CONFIDENCE else None


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


@lru_cache(maxsize=64)
def _runs(source: str) -> frozenset[tuple[str, ...]]:
    """Every run of _LEAK_WORDS words of the instructions (one prompt per advisor: cached)."""
    words = _words(source)
    return frozenset(tuple(words[i : i + _LEAK_WORDS]) for i in range(len(words) - _LEAK_WORDS + 1))


def _quotes(reply: str, source: str) -> bool:
    words, runs = _words(reply), _runs(source)
    return any(
        tuple(words[i : i + _LEAK_WORDS]) in runs for i in range(len(words) - _LEAK_WORDS + 1)
    )


def rejection(
    reply: str | None, advisor_language: str, customer_text: str, prompt: str
) -> str | None:
    """Why the reply must not be sent, or None."""
    if not reply or not reply.strip():
        return "empty"
    lowered = reply.lower()
    if any(name in lowered for name in TOOL_NAMES) or _quotes(reply, prompt or GLOBAL_INSTRUCTIONS):
        return "leaked_instructions"
    language = advisor_language[:2].lower()
    if language_of(customer_text) == language:
        written = language_of(reply)
        if written is not None and written != language:
            return "wrong_language"
    return None
