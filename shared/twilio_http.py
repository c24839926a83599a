"""twilio-python's HTTP client, sent straight through a requests `HTTPAdapter`.

twilio-python lets a caller pass its own `HttpClient` (the documented way to change how it
talks HTTP). Its default, `TwilioHttpClient`, goes through a `requests.Session`: preparing the
request (cookies, hooks, auth objects, environment merging), then formatting a dozen log lines
whether or not anyone reads them. For the short form posts we make, that is about 40% of a
send's CPU (BENCHMARKS.md, section 11). This client builds the same request itself and hands it
to the adapter a Session would have used: the same connection pool and keep-alive, the same
TLS verification and proxy handling, and the same `requests` exceptions, so callers and tests
see no difference. The SDK's request building and its typed resources are kept as they are.
"""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from twilio.http import HttpClient
from twilio.http.response import Response

_logger = logging.getLogger("twilio.http_client")
_NO_BODY_METHODS = frozenset({"GET", "HEAD"})  # as requests: other methods say Content-Length: 0


def _encode(values: dict[str, object] | None) -> str:
    """Form or query encoding as requests does it: a list repeats its key, None is left out."""
    return urlencode({k: v for k, v in (values or {}).items() if v is not None}, doseq=True)


class AdapterHttpClient(HttpClient):  # type: ignore[misc]  # twilio ships no type hints
    """One instance per thread, like the SDK's own client: its timeout is its own to set."""

    def __init__(self, timeout: float | None, proxies: dict[str, str] | None = None) -> None:
        super().__init__(_logger, is_async=False, timeout=timeout)
        self.adapter = HTTPAdapter(max_retries=0)  # a retry is ours to decide (the sweep's)
        self.proxies = dict(proxies or {})

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """The same request TwilioHttpClient would send. Redirects are never followed: the
        SDK asks for none, and Twilio's REST API answers without them."""
        if timeout is not None and timeout <= 0:
            raise ValueError(timeout)
        prepared = requests.PreparedRequest()
        prepared.method = method.upper()
        query = _encode(params)
        prepared.url = f"{url}?{query}" if query else url
        prepared.headers = CaseInsensitiveDict(headers or {})
        # A Session's default, for the requests where the SDK drops its own (DELETE).
        prepared.headers.setdefault("Accept", "*/*")
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            prepared.headers["Authorization"] = f"Basic {token}"
        if "json" in prepared.headers.get("Content-Type", ""):
            body: bytes | None = json.dumps(data).encode() if data is not None else None
        else:
            body = _encode(data).encode() if data else None
        prepared.body = body
        if body is not None or prepared.method not in _NO_BODY_METHODS:
            # Without a length the adapter would send the body chunked.
            prepared.headers["Content-Length"] = str(len(body or b""))
        answer = self.adapter.send(
            prepared, timeout=timeout or self.timeout, verify=True, proxies=self.proxies
        )
        try:
            return Response(int(answer.status_code), answer.text, answer.headers)
        finally:
            answer.close()  # read whole: the connection goes back to the pool

    def close(self) -> None:
        self.adapter.close()
