"""Which messages wait for the rest of their burst (shared.burst)."""

from __future__ import annotations

import pytest

from shared.burst import burst_wait, reads_complete


@pytest.mark.parametrize(
    "body",
    [
        "¿Tienen envíos a Cali?",
        "¿Precio?",
        "Hola, ¿abren el sábado?",
        "Necesito el catálogo.",
        "quería saber cuánto cuesta el envío a Medellín",
        "Me llegó el pedido incompleto!",
    ],
)
def test_complete_messages_do_not_wait(body: str) -> None:
    assert reads_complete(body)
    assert burst_wait(1.5, body) == 0.0


@pytest.mark.parametrize(
    "body",
    ["hola", "Hola!", "Buenas tardes.", "una pregunta", "Una pregunta?", "mira", "quiero info",
     "del plan", "Gracias", "", "   ", "Buenas tardes, quería preguntar"],
)  # fmt: skip
def test_fragments_wait_the_configured_time(body: str) -> None:
    assert not reads_complete(body)
    assert burst_wait(1.5, body) == 1.5


def test_media_decides_by_kind() -> None:
    assert reads_complete("", ["audio/ogg"])  # a voice note
    assert reads_complete("", location=True)
    assert not reads_complete("", ["image/jpeg"])  # a photo: the question usually follows
    assert reads_complete("¿Tienen este modelo en azul?", ["image/jpeg"])


def test_accents_and_case_do_not_matter() -> None:
    assert not reads_complete("BUENOS DÍAS")
    assert not reads_complete("Perdón")
