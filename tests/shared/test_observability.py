from __future__ import annotations

import io
import json
import logging
from typing import Any

import sentry_sdk
from sentry_sdk.transport import Transport

from shared.observability import (
    CloudLoggingFormatter,
    get_logger,
    init_sentry,
    mask_phone,
    set_trace,
)


def test_mask_phone_keeps_country_code_and_last_three() -> None:
    assert mask_phone("+573012345678") == "+57*******678"
    assert mask_phone("whatsapp:+14155238886") == "whatsapp:+1*******886"
    assert mask_phone("+351912345678") == "+351******678"
    assert mask_phone("hello") == "hello"


def capture_lines(level: int = logging.INFO) -> tuple[io.StringIO, logging.Logger]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(CloudLoggingFormatter("demo-project"))
    logger = logging.getLogger(f"test.{id(stream)}")
    logger.handlers = [handler]
    logger.setLevel(level)
    logger.propagate = False
    return stream, logger


def test_log_lines_are_json_with_masked_phones_and_no_bodies() -> None:
    stream, logger = capture_lines()
    log = get_logger(logger.name)
    set_trace("105445aa7843bc8bf206b12000100000/1;o=1")
    log.info(
        "inbound from +573012345678", customer_phone="+573012345678", body="mi clave es 1234", n=3
    )
    set_trace(None)
    log.warning("twilio refused", to="whatsapp:+14155238886")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["severity"] == "INFO"
    assert lines[0]["message"] == "inbound from +57*******678"
    assert lines[0]["customer_phone"] == "+57*******678"
    assert lines[0]["body"] == "[Filtered]"
    assert lines[0]["n"] == 3
    assert lines[0]["logging.googleapis.com/trace"] == (
        "projects/demo-project/traces/105445aa7843bc8bf206b12000100000"
    )
    assert lines[1]["severity"] == "WARNING" and lines[1]["to"] == "whatsapp:+1*******886"
    assert "logging.googleapis.com/trace" not in lines[1]
    assert "1234" not in stream.getvalue()


def test_bodies_appear_only_at_debug() -> None:
    stream, logger = capture_lines(logging.DEBUG)
    get_logger(logger.name).debug("detail", body="hola")
    assert json.loads(stream.getvalue())["body"] == "hola"


class CapturingTransport(Transport):
    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Any) -> None:
        for item in envelope.items:
            if item.type == "event":
                self.events.append(item.payload.json)


def test_sentry_events_are_scrubbed() -> None:
    # Built at run time so the source lines Sentry attaches do not contain them.
    phone, secret = "+57" + "3012345678", "sec" + "reto"
    transport = CapturingTransport()
    assert init_sentry("https://key@sentry.example.test/1", "test", transport=transport)
    try:
        with sentry_sdk.new_scope() as scope:
            scope.set_extra("form", {"From": f"whatsapp:{phone}", "Body": secret})
            try:
                raise RuntimeError(f"could not answer {phone}")
            except RuntimeError as exc:
                sentry_sdk.capture_exception(exc)
        sentry_sdk.flush()
    finally:
        sentry_sdk.init()  # disable again for the rest of the suite
    assert len(transport.events) == 1
    dumped = json.dumps(transport.events[0])
    assert phone not in dumped and secret not in dumped
    assert "+57*******678" in dumped
