"""The benchmarks' load generator: signed Twilio forms posted to a served function from a
process of its own, so it shares no GIL with the stand-ins that live in the bench's process.

Each run is `python -m devstack.load` with its work pickled on stdin and its result on stdout:
a fresh interpreter that imports only what posting needs (multiprocessing's spawn would import
the bench's main module again first, at three times the start-up). Times are
`time.monotonic()`: one clock for every process of the machine, so they compare with the
stand-ins' records of when a reply arrived.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass
from typing import Any

import requests

Form = tuple[dict[str, str], str]  # the form and its X-Twilio-Signature


@dataclass(frozen=True)
class Posted:
    sender: str  # the form's From
    scheduled: float  # when it was due: open loop, start + i/rate; closed loop, when taken
    started: float  # when its POST began
    done: float
    ok: bool


def _poster(url: str) -> Any:
    """A function posting one form on this thread's own kept-alive session."""
    local = threading.local()

    def post(form: dict[str, str], signature: str, scheduled: float) -> Posted:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.monotonic()
        try:
            ok = session.post(
                url, data=form, headers={"X-Twilio-Signature": signature}, timeout=60
            ).ok
        except requests.RequestException:
            ok = False
        return Posted(form["From"], scheduled, started, time.monotonic(), ok)

    return post


def _open_loop(url: str, forms: list[Form], rate: float) -> list[Posted]:
    """Form i is posted at start + i/rate, whatever the earlier ones are doing."""
    post = _poster(url)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=256) as pool:
        futures = []
        for i, (form, signature) in enumerate(forms):
            scheduled = started + i / rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(post, form, signature, scheduled))
    return [future.result() for future in futures]


def _closed_loop(url: str, forms: list[Form], clients: int, seconds: float) -> list[Posted]:
    """`clients` workers each post their next form as soon as the last one was answered."""
    post = _poster(url)
    stop_at = time.monotonic() + seconds
    queue: Iterator[Form] = iter(forms)
    lock = threading.Lock()
    posted: list[Posted] = []

    def worker() -> None:
        while time.monotonic() < stop_at:
            with lock:
                item = next(queue, None)
            if item is None:
                return
            result = post(item[0], item[1], time.monotonic())
            with lock:
                posted.append(result)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return posted


def _run(
    url: str, forms: list[Form], rate: float, clients: int, seconds: float
) -> tuple[list[Posted], float]:
    started = time.monotonic()
    posted = _open_loop(url, forms, rate) if rate else _closed_loop(url, forms, clients, seconds)
    return posted, time.monotonic() - started


def post_forms(
    url: str, forms: list[Form], rate: float = 0, clients: int = 0, seconds: float = 0
) -> tuple[list[Posted], float]:
    """Post `forms` open loop at `rate` per second, or closed loop with `clients` workers for
    `seconds`, from a process of its own. Returns what was posted and the wall time it took."""
    work = pickle.dumps((url, forms, rate, clients, seconds))
    child = subprocess.run(
        [sys.executable, "-m", "devstack.load"], input=work, stdout=subprocess.PIPE, check=True
    )
    rows, wall = pickle.loads(child.stdout)
    return [Posted(*row) for row in rows], wall


if __name__ == "__main__":
    posted, wall = _run(*pickle.load(sys.stdin.buffer))
    # Plain tuples: this module is __main__ here, its classes would not unpickle in the bench.
    sys.stdout.buffer.write(pickle.dumps(([astuple(p) for p in posted], wall)))
