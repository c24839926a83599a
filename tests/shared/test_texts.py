from __future__ import annotations

import pytest

from shared.assistant import history_to_messages
from shared.texts import GLOBAL_INSTRUCTIONS, notice, opt_keyword, split_message, system_prompt


@pytest.mark.parametrize(
    ("body", "expected"),
    [("STOP", "out"), (" baja! ", "out"), ("Cancelar", "out"), ("unsubscribe", "out"),
     ("START", "in"), ("alta", "in"), ("stop sending me ads please", None), ("", None)],
)  # fmt: skip
def test_opt_keyword(body: str, expected: str | None) -> None:
    assert opt_keyword(body) == expected


def test_split_prefers_lines_then_sentences_and_keeps_order() -> None:
    text = "Primera línea corta.\n" + ("Una frase. " * 200)
    chunks = split_message(text, 1600)
    assert all(len(c) <= 1600 for c in chunks)
    assert " ".join(chunks).replace("\n", " ").split() == text.split()
    assert all(c.endswith(".") for c in chunks)
    assert split_message("corto") == ["corto"]
    assert split_message("x" * 3300) == ["x" * 1600, "x" * 1600, "x" * 100]


def test_prompt_and_notices_follow_the_advisor_settings() -> None:
    prompt = system_prompt({"prompt": "Custom"}, "Ana")
    assert prompt.startswith(GLOBAL_INSTRUCTIONS) and prompt.endswith("(Ana):\nCustom")
    assert "Ana" in system_prompt({}, "Ana") and "español" in system_prompt({}, "Ana")
    assert "English" in system_prompt({"language": "en"}, "Ana")
    assert notice("handoff", {"language": "en"}, name="Ana").startswith("I'm passing you to Ana")
    assert notice("handoff", {"handoff_message": "Ya viene {name}"}, name="Ana") == "Ya viene Ana"


def test_history_maps_authors_to_roles() -> None:
    history = [
        {"direction": "inbound", "author": "customer", "body": "hola"},
        {"direction": "outbound", "author": "ai", "body": "¿qué tal?"},
        {"direction": "outbound", "author": "system", "body": "opt-out"},
        {"direction": "inbound", "author": "customer", "body": "", "transcript": "nota de voz"},
    ]
    assert history_to_messages(history) == [
        {"role": "user", "content": "hola"},
        {"role": "assistant", "content": "¿qué tal?"},
        {"role": "user", "content": "nota de voz"},
    ]


@pytest.mark.parametrize(
    "unit",
    [
        "👍🏽",
        "🇨🇴",
        "👨‍👩‍👧",
        "❤️",
        "é",
    ],  # skin tone, flag, ZWJ family, variation selector, e + accent
)
def test_hard_split_never_breaks_an_emoji_or_accent(unit: str) -> None:
    text = unit * 1000  # no spaces: every cut is a hard cut
    chunks = split_message(text, 1600)
    assert "".join(chunks) == text
    assert all(len(c) <= 1600 and c == unit * (len(c) // len(unit)) for c in chunks)


def test_admin_notices_are_substituted_safely() -> None:
    settings = {"opted_out_message": "Listo {name}, {no} $dinero ${name}"}
    assert notice("opted_out", settings, name="Ana") == "Listo Ana, {no} $dinero Ana"


@pytest.mark.parametrize("body", ["ＳＴＯＰ", "STOP\u200b", "\ufeffbaja", "Ｂａｊａ！"])
def test_opt_out_words_are_normalised(body: str) -> None:
    assert opt_keyword(body) == "out"
