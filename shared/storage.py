"""Supabase Storage facade (private bucket for WhatsApp media), through the `supabase` client."""

from __future__ import annotations

from typing import Any

import httpx
from supabase.lib.client_options import SyncClientOptions

from supabase import create_client

# Supabase Storage removes at most this many objects per call.
REMOVE_LIMIT = 1000


class Storage:
    def __init__(self, url: str, service_role_key: str, bucket: str, timeout: float) -> None:
        # One bounded httpx client for every Supabase API (the client's own timeout knobs are deprecated).
        self._http = httpx.Client(timeout=timeout)
        options = SyncClientOptions(httpx_client=self._http)
        self.client = create_client(url, service_role_key, options=options)
        self.bucket = bucket

    def close(self) -> None:
        self._http.close()

    def _files(self) -> Any:
        return self.client.storage.from_(self.bucket)

    def upload(self, path: str, data: bytes, content_type: str) -> None:
        self._files().upload(path, data, {"content-type": content_type, "upsert": "true"})

    def remove(self, paths: list[str]) -> int:
        """Delete objects, in calls Storage accepts; return how many Storage reports deleted
        (an object already gone counts zero). Raises if a call fails."""
        removed = 0
        for start in range(0, len(paths), REMOVE_LIMIT):
            removed += len(self._files().remove(paths[start : start + REMOVE_LIMIT]))
        return removed

    def signed_url(self, path: str, expires_in: int) -> str:
        return str(self._files().create_signed_url(path, expires_in)["signedURL"])
