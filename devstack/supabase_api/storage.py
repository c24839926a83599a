"""Supabase Storage subset: upload (service role), signed URLs honouring the bucket's RLS
policy, and reading an object through its signed URL. Object bytes live in a local folder;
their rows live in `storage.objects`, as on Supabase, so the policies apply to them."""

from __future__ import annotations

import mimetypes
import time
from pathlib import Path
from typing import Any

import jwt

from devstack.supabase_api.auth import AuthFailure


class StorageFailure(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        # storage-api's error shape: statusCode is a string.
        self.body = {"statusCode": str(status), "error": error, "message": message}


def object_path(root: Path, bucket: str, name: str) -> Path:
    path = (root / bucket / name).resolve()
    if not path.is_relative_to(root.resolve()) or ".." in name.split("/"):
        raise StorageFailure(400, "invalid_key", "Invalid key")
    return path


def sign(secret: str, bucket: str, name: str, expires_in: int) -> str:
    now = int(time.time())
    claims = {"url": f"{bucket}/{name}", "iat": now, "exp": now + max(1, expires_in)}
    return jwt.encode(claims, secret, algorithm="HS256")


def verify(secret: str, bucket: str, name: str, token: str) -> None:
    try:
        claims: dict[str, Any] = jwt.decode(token, secret, algorithms=["HS256"])
    except jwt.ExpiredSignatureError:
        raise StorageFailure(400, "InvalidJWT", "jwt expired") from None
    except jwt.PyJWTError:
        raise StorageFailure(400, "InvalidJWT", "invalid signature") from None
    if claims.get("url") != f"{bucket}/{name}":
        raise StorageFailure(400, "InvalidSignature", "The url do not match the signature")


def content_type(name: str, metadata: dict[str, Any] | None) -> str:
    return (
        (metadata or {}).get("mimetype")
        or mimetypes.guess_type(name)[0]
        or "application/octet-stream"
    )


def require_service_role(claims: dict[str, Any]) -> None:
    if claims.get("role") != "service_role":
        raise AuthFailure(
            403, "forbidden", "the local stand-in accepts writes from the service role only"
        )
