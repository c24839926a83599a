"""What keeps a model reply from going out: empty, quoting the instructions or a tool, or in
another language than the advisor's when the customer wrote in the advisor's."""

from __future__ import annotations

import pytest

from shared.reply_check import language_of, rejection
from shared.texts import system_prompt

PROMPT = system_prompt({"prompt": "Eres el asistente de Ana. Vendemos muebles en Bogotá."}, "Ana")
CUSTOMER_ES = "Hola, ¿tienen envíos a Medellín esta semana?"


@pytest.mark.parametrize(
    ("reply", "customer", "why"),
    [
        ("", CUSTOMER_ES, "empty"),
        ("   ", CUSTOMER_ES, "empty"),
        ("Voy a usar handoff_to_human para pasarte con Ana.", CUSTOMER_ES, "leaked_instructions"),
        ("Mis reglas: Only state facts that are in the advisor's instructions, the conversation, "
         "or the context", CUSTOMER_ES, "leaked_instructions"),
        ("Yes, we ship to Medellín this week, delivery takes two days.", CUSTOMER_ES,
         "wrong_language"),
        ("Sí, enviamos a Medellín esta semana; la entrega tarda dos días.", CUSTOMER_ES, None),
        # The customer wrote in English: answering in English is the model's call.
        ("Yes, we ship to Medellín this week, delivery takes two days.",
         "Hi, do you ship to Medellin this week?", None),
        # Too short to tell a language: never rejected for it.
        ("Ok!", CUSTOMER_ES, None),
    ],
)  # fmt: skip
def test_rejections(reply: str, customer: str, why: str | None) -> None:
    assert rejection(reply, "es", customer, PROMPT) == why


def test_languages_are_told_only_when_sure() -> None:
    assert language_of(CUSTOMER_ES) == "es"
    assert language_of("ok") is None
