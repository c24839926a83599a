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
     ("canceled", "canceled"), ("partially_delivered", "delivered"), ("READ", "read")],
)  # fmt: skip
def test_twilio_statuses_map_onto_ours(twilio: str, ours: str) -> None:
    db = RecordingDb()
    assert apply_status_callback(db, callback(twilio)) == "applied"  # type: ignore[arg-type]
    assert db.calls == [("SM" + "b" * 32, ours, None, None, None)]  # one round trip


def test_our_row_id_is_passed_only_when_it_is_one() -> None:
    db = RecordingDb()
    row = "5f0c6c2e-6b7a-4d3e-9a51-2f1c8f7b1a10"
    apply_status_callback(db, callback("sent"), row)  # type: ignore[arg-type]
    apply_status_callback(db, callback("sent"), "not-a-row")  # type: ignore[arg-type]
    assert [call[4] for call in db.calls] == [row, None]


def test_unknown_status_is_ignored_without_a_query() -> None:
    db = RecordingDb()
    assert apply_status_callback(db, callback("receiving")) == "ignored"  # type: ignore[arg-type]
    assert db.calls == []


def test_error_code_is_passed_on() -> None:
    db = RecordingDb("early")
    assert apply_status_callback(db, callback("undelivered", "63016")) == "early"  # type: ignore[arg-type]
    assert db.calls[0][2] == 63016
