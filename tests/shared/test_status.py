"""Status callbacks: Twilio's statuses map onto ours; unknown ones never reach the database."""

from __future__ import annotations

from typing import Any

import pytest

from shared.status import apply_status_callback
from shared.twilio_payloads import StatusCallback


class RecordingDb:
    def __init__(self, answer: str = "applied") -> None:
        self.answer, self.calls = answer, []  # type: ignore[var-annotated]

    def value(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        self.calls.append(params)
        return self.answer


def callback(status: str, code: str = "") -> StatusCallback:
    return StatusCallback.from_form(
        {"MessageSid": "SM" + "b" * 32, "MessageStatus": status, "ErrorCode": code}
    )


@pytest.mark.parametrize(
    ("twilio", "ours"),
    [("accepted", "queued"), ("sending", "sending"), ("sent", "sent"), ("delivered", "delivered"),
     ("read", "read"), ("undelivered", "undelivered"), ("failed", "failed"),
     ("canceled", "failed"), ("partially_delivered", "delivered"), ("READ", "read")],
)  # fmt: skip
def test_twilio_statuses_map_onto_ours(twilio: str, ours: str) -> None:
    db = RecordingDb()
    assert apply_status_callback(db, callback(twilio)) == "applied"  # type: ignore[arg-type]
    assert db.calls == [("SM" + "b" * 32, ours, None, None)]


def test_unknown_status_is_ignored_without_a_query() -> None:
    db = RecordingDb()
    assert apply_status_callback(db, callback("receiving")) == "ignored"  # type: ignore[arg-type]
    assert db.calls == []


def test_error_code_is_passed_on() -> None:
    db = RecordingDb("early")
    assert apply_status_callback(db, callback("undelivered", "63016")) == "early"  # type: ignore[arg-type]
    assert db.calls[0][2] == 63016
