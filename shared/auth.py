"""Verify Supabase access tokens locally: HS256 with the project's JWT secret, or asymmetric
keys (RS256/ES256) from the project's JWKS, fetched once and cached. No network per request."""

from __future__ import annotations

import uuid
from typing import Any

import jwt

_ASYMMETRIC = {"RS256", "ES256", "EdDSA"}
# Clocks of Supabase Auth and of a function instance may differ by a few seconds: a token
# minted "now" must not be refused as issued in the future (iat/nbf), nor expire early.
LEEWAY_SECONDS = 30


class AuthError(Exception):
    """Missing, expired or invalid token: the caller's to fix (401)."""


class AuthUnavailable(Exception):
    """The project's signing keys could not be fetched: not the caller's fault (503)."""


class TokenVerifier:
    def __init__(self, secret: str | None, jwks_url: str | None, audience: str) -> None:
        self.secret = secret
        self.audience = audience
        self._jwks = (
            jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=3600, timeout=5)
            if jwks_url
            else None
        )

    def verify(self, token: str) -> dict[str, Any]:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            key: Any
            if algorithm == "HS256" and self.secret:
                key = self.secret
            elif algorithm in _ASYMMETRIC and self._jwks is not None:
                key = self._jwks.get_signing_key_from_jwt(token).key
            else:
                raise AuthError(f"unsupported token algorithm {algorithm!r}")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
                audience=self.audience,
                options={"require": ["exp", "sub"]},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthUnavailable(str(exc)) from exc
        except jwt.PyJWTError as exc:
            raise AuthError(str(exc)) from exc
        try:
            uuid.UUID(str(claims["sub"]))
        except ValueError:
            raise AuthError("sub is not a user id") from None
        return claims


def bearer_token(header: str | None) -> str | None:
    scheme, _, token = (header or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
