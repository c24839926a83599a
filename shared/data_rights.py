"""A customer's data rights (the send function's /customers/export and /customers/erase):
tenant admins export or erase everything one customer left in their tenant.

The database decides who may (private.admin_tenant) and what belongs to the customer. Export is
one SQL call; media get signed URLs, and a large document goes to Storage behind a signed URL.
Erase runs in steps that can each fail and be repeated: the SQL function names what Storage
and Twilio hold (the rows still point at it), those go first, then every row in one
transaction. A crash anywhere leaves a running erasure_requests row; the same request resumes
it, and a finished one reports zeros the next time.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.observability import capture, get_logger
from shared.outbound import Answer, error
from shared.services import Services

log = get_logger(__name__)
# Media stored since the erasure started are removed in another round; past this, give up.
ERASE_ROUNDS = 3


class CustomerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_phone: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$")  # E.164, as conversations store it
    tenant_id: UUID | None = None  # required only for an admin of several tenants


def export_customer(services: Services, claims: dict[str, Any], request: CustomerRequest) -> Answer:
    user_id = str(claims["sub"])
    document: dict[str, Any] = services.db.value(
        "select public.export_customer(%s, %s, %s)",
        (user_id, request.tenant_id, request.customer_phone),
        actor=user_id,
    )
    if not document["conversations"]:
        return error(404, "not_found", "no conversations with this customer in the tenant")
    seconds = services.settings.signed_url_seconds
    for conversation in document["conversations"]:
        for message in conversation["messages"]:
            for item in message["media"]:
                if item.get("path") and services.storage is not None:
                    item["url"] = services.storage.signed_url(item["path"], seconds)
    encoded = json.dumps(document, ensure_ascii=False, default=str).encode()
    if len(encoded) <= services.settings.export_inline_max_bytes or services.storage is None:
        return Answer(200, document)
    # Kept under the customer's first conversation, so the customer's erasure removes it too.
    first = document["conversations"][0]
    path = f"{document['tenant_id']}/{first['advisor_id']}/{first['id']}/exports/{uuid.uuid4().hex}.json"
    services.storage.upload(path, encoded, "application/json")
    return Answer(
        200,
        {"url": services.storage.signed_url(path, seconds), "expires_in": seconds,
         "bytes": len(encoded)},
    )  # fmt: skip


def erase_customer(services: Services, claims: dict[str, Any], request: CustomerRequest) -> Answer:
    user_id = str(claims["sub"])
    db = services.db
    removed: list[str] = []
    for _ in range(ERASE_ROUNDS):
        plan: dict[str, Any] = db.value(
            "select public.prepare_customer_erasure(%s, %s, %s)",
            (user_id, request.tenant_id, request.customer_phone),
            actor=user_id,
        )
        request_id = plan["request_id"]
        objects = [p for p in plan["objects"] if p not in removed]
        if objects and services.storage is None:
            return error(503, "storage_unavailable", "Storage is not configured: nothing erased")
        # What went is counted even when the next call fails: a resumed erasure finds it gone.
        storage_removed = twilio_removed = 0
        failure: Exception | None = None
        try:
            storage_removed = services.storage.remove(objects) if services.storage else 0
            removed += objects
            for url in plan["twilio_media"]:
                twilio_removed += services.whatsapp.delete_media(url)
        except Exception as exc:  # Storage or Twilio unwell: the same request resumes later
            failure = exc
        db.value(
            "select public.record_erasure_progress(%s, %s, %s)",
            (request_id, storage_removed, twilio_removed),
        )
        if failure is not None:
            log.warning("erasure paused", request_id=request_id,
                        error=f"{type(failure).__name__}: {failure}"[:300])  # fmt: skip
            capture(failure)
            detail = "Storage or Twilio did not answer; repeat the request to resume"
            return error(503, "erasure_incomplete", detail, request_id=request_id)
        done: dict[str, Any] = db.value(
            "select public.finish_customer_erasure(%s, %s, %s)",
            (request_id, request.customer_phone, removed),
            actor=user_id,
        )
        if not done["pending"]:
            counts = {key: int(value) for key, value in done["counts"].items()}
            log.info("customer erased", request_id=request_id, **counts)
            return Answer(200, {"request_id": request_id, "counts": counts})
    capture(RuntimeError("media kept arriving during the erasure"))
    return error(503, "try_again", "new media arrived during the erasure; repeat the request")
