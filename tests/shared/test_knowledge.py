"""Cutting documents into passages: headings kept, paragraphs packed, Q&A pairs whole."""

from __future__ import annotations

import pytest

from shared.knowledge import CHUNK_CHARS, ChunkingError, chunk


def test_markdown_is_cut_at_headings_and_keeps_them() -> None:
    doc = "Intro corta.\n\n# Envíos\nEnviamos a Medellín.\n\nY a Cali.\n\n## Pagos\nNequi o PSE."
    assert chunk("markdown", doc) == [
        {"heading": None, "content": "Intro corta."},
        {"heading": "Envíos", "content": "Enviamos a Medellín.\n\nY a Cali."},
        {"heading": "Pagos", "content": "Nequi o PSE."},
    ]


def test_long_paragraphs_become_passages_of_bounded_size() -> None:
    sentence = "Nuestra garantía cubre defectos de fábrica durante doce meses. "
    passages = chunk("text", sentence * 40 + "\n\nOtro párrafo.")
    assert len(passages) > 3
    assert all(len(str(p["content"])) <= CHUNK_CHARS for p in passages)
    assert all(p["heading"] is None for p in passages)
    assert str(passages[-1]["content"]).endswith("Otro párrafo.")


def test_a_qa_csv_gives_one_passage_per_pair_header_or_not() -> None:
    doc = 'pregunta,respuesta\n"¿Hacen envíos?","Sí, a todo el país."\n\n¿Horario?,De 8 a 18.\n'
    assert chunk("qa_csv", doc) == [
        {"heading": "¿Hacen envíos?", "content": "Sí, a todo el país."},
        {"heading": "¿Horario?", "content": "De 8 a 18."},
    ]


@pytest.mark.parametrize("doc", ["solo una columna\n", "a,b,c\n", "¿Pregunta?,\n"])
def test_a_malformed_csv_says_which_line(doc: str) -> None:
    with pytest.raises(ChunkingError, match="line 1"):
        chunk("qa_csv", doc)
