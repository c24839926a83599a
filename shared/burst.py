"""How long a message waits for the rest of its burst before the AI answers.

People write on WhatsApp in bursts ("hola" / "una pregunta" / "¿tienen envío a Cali?"): one
answer to the whole burst reads better and costs one model call. Waiting costs every reply the
same delay, so only a message that reads as a fragment waits; one that reads as complete (a
question, a sentence with final punctuation, more than a few words, a voice note, a shared
location) is answered at once. A newer message still supersedes an older one that is waiting.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

# A sentence of this many words stands on its own, punctuated or not.
LONG_ENOUGH_WORDS = 6
# With final punctuation, this many words make a sentence ("Necesito el catálogo.").
PUNCTUATED_WORDS = 3
_FINAL = (".", "!", "?", "…")
# Words that open a conversation rather than say something: a message made only of these
# waits, whatever its punctuation ("Hola!", "Buenas tardes.", "Una pregunta?").
OPENER_WORDS = frozenset({
    "hola", "holaa", "holi", "ola", "buenas", "buenos", "buen", "dia", "dias", "tardes", "noches",
    "hey", "hi", "hello", "oye", "oiga", "mira", "mire", "una", "un", "pregunta", "consulta",
    "duda", "disculpa", "disculpe", "perdon", "senor", "senora", "senorita", "amigo", "amiga",
    "ey", "saludos", "que", "tal", "como", "estas", "esta", "good", "morning", "afternoon",
    "evening", "quick", "question",
})  # fmt: skip


def _words(text: str) -> list[str]:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    cleaned = "".join(c if c.isalnum() else " " for c in plain)
    return cleaned.split()


def reads_complete(body: str, media_types: Iterable[str] = (), location: bool = False) -> bool:
    """Does this message read as a whole turn, worth answering without waiting?"""
    if location or any(kind.startswith("audio/") for kind in media_types):
        return True  # a voice note is said in one go; a location answers a question
    text = body.strip()
    words = _words(text)
    if not words or all(word in OPENER_WORDS for word in words):
        return False  # a photo without caption, a greeting: the words usually follow
    if text.endswith("?"):
        return True
    if len(words) >= LONG_ENOUGH_WORDS:
        return True
    return text.endswith(_FINAL) and len(words) >= PUNCTUATED_WORDS


def burst_wait(
    configured: float, body: str, media_types: Iterable[str] = (), location: bool = False
) -> float:
    """Seconds to wait for a newer message: none for a complete one."""
    return 0.0 if reads_complete(body, media_types, location) else configured
