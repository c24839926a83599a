"""The benchmarks' load generator (a process of its own), against a local server: every form is
posted once with its signature; open loop keeps its schedule, closed loop drains the forms."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest

from devstack.load import post_forms
from devstack.local_server import LocalServer, Request, Response


class Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Response:
        sender = request.form()["From"][0]
        with self._lock:
            self.received.append((sender, request.headers.get("x-twilio-signature", "")))
        return Response(
            500 if sender.endswith("9") else 200, "<Response/>", content_type="text/xml"
        )


@pytest.fixture
def receiver() -> Iterator[tuple[str, Receiver]]:
    handler = Receiver()
    server = LocalServer(handler).start()
    yield server.url, handler
    server.stop()


def _forms(count: int) -> list[tuple[dict[str, str], str]]:
    return [
        ({"From": f"whatsapp:+5730000000{i}", "Body": "hola"}, f"sig-{i}") for i in range(count)
    ]


def test_open_loop_posts_each_form_on_its_schedule(receiver: tuple[str, Receiver]) -> None:
    url, handler = receiver
    posted, wall = post_forms(url, _forms(10), rate=200)
    assert (
        sorted(p.sender for p in posted) == sorted(form["From"] for form, _ in _forms(10))
        and wall > 0
    )
    assert sorted(handler.received) == sorted(
        (form["From"], signature) for form, signature in _forms(10)
    )
    scheduled = sorted(p.scheduled for p in posted)
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(scheduled)}
    assert gaps == {round(1 / 200, 6)}  # due at start + i/rate, whatever the answers did
    assert all(p.scheduled <= p.done and p.started <= p.done for p in posted)
    assert [p.ok for p in posted if p.sender.endswith("9")] == [False]
    assert sum(p.ok for p in posted) == 9


def test_closed_loop_drains_the_forms_with_its_workers(receiver: tuple[str, Receiver]) -> None:
    url, handler = receiver
    posted, _ = post_forms(url, _forms(12), clients=3, seconds=600)
    assert len(posted) == len(handler.received) == 12  # returned when the forms ran out
    assert len({p.sender for p in posted}) == 12
