"""Serve the built advisor console (dashboard/dist) and the `config.js` a deployment writes
beside it, so the local console talks to the local Supabase stand-in and send function."""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path

from devstack.local_server import LocalServer, Request, Response

DIST = Path(__file__).resolve().parent.parent / "dashboard" / "dist"


def config_js(supabase_url: str, anon_key: str, functions_url: str) -> str:
    """The console's deploy-time settings (cloudbuild.yaml writes the same shape)."""
    config = {
        "supabaseUrl": supabase_url,
        "supabaseAnonKey": anon_key,
        "functionsUrl": functions_url,
    }
    return f"window.CONSOLE_CONFIG = {json.dumps(config)};\n"


class ConsoleServer(LocalServer):
    def __init__(self, config: str, dist: Path = DIST, port: int = 0) -> None:
        self.config, self.dist = config, dist.resolve()
        super().__init__(self._handle, port=port)

    def _handle(self, request: Request) -> Response:
        if request.method != "GET":
            return Response(405, "GET only", content_type="text/plain")
        if request.path == "/config.js":
            return Response(200, self.config, {"Cache-Control": "no-store"}, "text/javascript")
        name = request.path.lstrip("/") or "index.html"
        path = (self.dist / name).resolve()
        if not path.is_relative_to(self.dist) or not path.is_file():
            if not (self.dist / "index.html").is_file():
                return Response(
                    503, "console not built: run `make console`", content_type="text/plain"
                )
            path = self.dist / "index.html"  # one page: every route is the app
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Response(200, path.read_bytes(), {"Cache-Control": "no-cache"}, kind)
