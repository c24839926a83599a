"""The knowledge base's uploads (the send function's /knowledge): parse a document, cut it into
passages, and store it in one SQL call that replaces the source with the same title.

Markdown is cut at headings, then at paragraph ends, into passages of at most CHUNK_CHARS
(each keeps its heading); plain text at paragraph ends; a question,answer CSV gives one passage
per pair (the question as heading). Retrieval itself happens in SQL (private.turn_knowledge).
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any, Literal
from uuid import UUID

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from shared.outbound import Answer, error
from shared.services import Services
from shared.texts import split_message

MAX_CONTENT_CHARS = 200_000
MAX_CHUNKS = 500
CHUNK_CHARS = 600
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")


class KnowledgeUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)
    format: Literal["markdown", "text", "qa_csv"]
    content: str = Field(min_length=1)
    language: Literal["es", "en", "pt"] = "es"
    advisor_id: UUID | None = None
    tenant_id: UUID | None = None


class ChunkingError(ValueError):
    """The document cannot be cut into passages (a malformed CSV row)."""


def chunk(kind: str, content: str) -> list[dict[str, str | None]]:
    """The document's passages, in order: [{heading, content}]."""
    if kind == "qa_csv":
        return _qa_pairs(content)
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in content.splitlines():
        found = _HEADING.match(line) if kind == "markdown" else None
        if found:
            sections.append((found.group(1), []))
        else:
            sections[-1][1].append(line)
    passages: list[dict[str, str | None]] = []
    for heading, lines in sections:
        for text in _pack(_paragraphs("\n".join(lines))):
            passages.append({"heading": heading, "content": text})
    return passages


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _pack(paragraphs: list[str]) -> list[str]:
    """Whole paragraphs together up to CHUNK_CHARS; a longer one is cut at sentence ends."""
    packed: list[str] = []
    for paragraph in paragraphs:
        for piece in split_message(paragraph, CHUNK_CHARS):
            if packed and len(packed[-1]) + 2 + len(piece) <= CHUNK_CHARS:
                packed[-1] += "\n\n" + piece
            else:
                packed.append(piece)
    return packed


def _qa_pairs(content: str) -> list[dict[str, str | None]]:
    pairs: list[dict[str, str | None]] = []
    for number, row in enumerate(csv.reader(io.StringIO(content.strip())), start=1):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise ChunkingError(f"CSV line {number}: expected question,answer ({len(row)} fields)")
        question, answer = (cell.strip() for cell in row)
        if number == 1 and question.lower() in ("question", "pregunta", "pergunta"):
            continue  # a header row
        if not question or not answer:
            raise ChunkingError(f"CSV line {number}: empty question or answer")
        pairs.append({"heading": question, "content": answer[:4000]})
    return pairs


def upload(services: Services, claims: dict[str, Any], request: KnowledgeUpload) -> Answer:
    if len(request.content) > MAX_CONTENT_CHARS:
        return error(413, "too_large", f"documents hold at most {MAX_CONTENT_CHARS} characters")
    try:
        passages = chunk(request.format, request.content)
    except ChunkingError as exc:
        return error(422, "invalid_document", str(exc))
    if not passages:
        return error(422, "invalid_document", "the document has no text")
    if len(passages) > MAX_CHUNKS:
        return error(
            422, "too_many_passages", f"{len(passages)} passages; at most {MAX_CHUNKS} a document"
        )
    stored: dict[str, Any] = services.db.value(
        "select public.replace_knowledge_source(%s, %s, %s, %s, %s, %s, %s)",
        (str(claims["sub"]), request.tenant_id, request.advisor_id, request.title,
         request.format, request.language, Jsonb(passages)),
        actor=str(claims["sub"]),
    )  # fmt: skip
    return Answer(201, {"source_id": str(stored["source_id"]), "passages": stored["chunks"]})


def list_sources(services: Services, claims: dict[str, Any]) -> Answer:
    sources = services.db.value("select public.list_knowledge_sources(%s)", (str(claims["sub"]),))
    return Answer(200, {"sources": sources})


def delete_source(services: Services, claims: dict[str, Any], source_id: UUID) -> Answer:
    deleted = services.db.value(
        "select public.delete_knowledge_source(%s, %s)",
        (str(claims["sub"]), source_id),
        actor=str(claims["sub"]),
    )
    if not deleted:
        return error(404, "not_found", "knowledge source not found")
    return Answer(200, {"deleted": str(source_id)})
