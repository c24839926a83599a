"""Supabase Auth (GoTrue) subset: password sign-in, refresh, user, sign-out.

Users and password hashes are read from `auth.users` as Supabase stores them (bcrypt); access
tokens are HS256 JWTs signed with the project's JWT secret and carry the claims GoTrue puts in
them. Refresh tokens live in memory: restarting the stand-in signs everyone out.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import bcrypt
import jwt

ACCESS_TOKEN_SECONDS = 3600


class AuthFailure(Exception):
    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        # GoTrue's error shape, which supabase-js turns into AuthApiError.
        self.body = {"code": status, "error_code": error_code, "msg": message}


def api_key(secret: str, role: str) -> str:
    """A project API key as Supabase's legacy keys are: a long-lived JWT naming a role."""
    now = int(time.time())
    claims = {"iss": "supabase-demo", "role": role, "iat": now, "exp": now + 10 * 365 * 86400}
    return jwt.encode(claims, secret, algorithm="HS256")


def user_json(row: dict[str, Any]) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": str(row["id"]),
        "aud": row["aud"] or "authenticated",
        "role": row["role"] or "authenticated",
        "email": row["email"],
        "email_confirmed_at": iso(row["email_confirmed_at"]),
        "phone": "",
        "confirmed_at": iso(row["email_confirmed_at"]),
        "last_sign_in_at": iso(row["last_sign_in_at"]),
        "app_metadata": row["raw_app_meta_data"] or {},
        "user_metadata": row["raw_user_meta_data"] or {},
        "identities": [],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "is_anonymous": False,
    }


USER_COLUMNS = (
    "id, aud, role, email, encrypted_password, email_confirmed_at, last_sign_in_at, "
    "raw_app_meta_data, raw_user_meta_data, created_at, updated_at, banned_until, deleted_at"
)


def check_password(row: dict[str, Any] | None, password: str) -> None:
    if row is None or not row["encrypted_password"]:
        raise AuthFailure(400, "invalid_credentials", "Invalid login credentials")
    if not bcrypt.checkpw(password.encode(), row["encrypted_password"].encode()):
        raise AuthFailure(400, "invalid_credentials", "Invalid login credentials")
    if row["email_confirmed_at"] is None:
        raise AuthFailure(400, "email_not_confirmed", "Email not confirmed")
    if row["deleted_at"] is not None:
        raise AuthFailure(400, "invalid_credentials", "Invalid login credentials")


@dataclass
class Sessions:
    secret: str
    issuer: str
    # refresh token -> (user id, session id)
    _refresh: dict[str, tuple[str, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, row: dict[str, Any], session_id: str | None = None) -> dict[str, Any]:
        now = int(time.time())
        session_id = session_id or str(uuid.uuid4())
        claims = {
            "iss": self.issuer,
            "sub": str(row["id"]),
            "aud": "authenticated",
            "exp": now + ACCESS_TOKEN_SECONDS,
            "iat": now,
            "email": row["email"],
            "phone": "",
            "app_metadata": row["raw_app_meta_data"] or {},
            "user_metadata": row["raw_user_meta_data"] or {},
            "role": "authenticated",
            "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now}],
            "session_id": session_id,
            "is_anonymous": False,
        }
        refresh = secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[refresh] = (str(row["id"]), session_id)
        return {
            "access_token": jwt.encode(claims, self.secret, algorithm="HS256"),
            "token_type": "bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "expires_at": now + ACCESS_TOKEN_SECONDS,
            "refresh_token": refresh,
            "user": user_json(row),
        }

    def redeem(self, refresh_token: str) -> tuple[str, str]:
        """Use a refresh token once (GoTrue rotates them); return (user id, session id)."""
        with self._lock:
            found = self._refresh.pop(refresh_token, None)
        if found is None:
            raise AuthFailure(
                400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found"
            )
        return found

    def sign_out(self, session_id: str) -> None:
        with self._lock:
            for token, (_, sid) in list(self._refresh.items()):
                if sid == session_id:
                    del self._refresh[token]

    def claims(self, token: str | None) -> dict[str, Any]:
        """The verified claims of an access token or API key (anon when there is none)."""
        if not token:
            raise AuthFailure(401, "no_authorization", "This endpoint requires a Bearer token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.secret, algorithms=["HS256"], options={"verify_aud": False}
            )
        except jwt.ExpiredSignatureError:
            raise AuthFailure(401, "bad_jwt", "invalid JWT: token is expired") from None
        except jwt.PyJWTError:
            raise AuthFailure(
                401, "bad_jwt", "invalid JWT: unable to parse or verify signature"
            ) from None
        if claims.get("role") not in ("anon", "authenticated", "service_role"):
            raise AuthFailure(401, "bad_jwt", "invalid JWT: unknown role")
        return claims
