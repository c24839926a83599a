"""Supabase access tokens: HS256 and JWKS, audience, expiry with leeway, key fetch failures."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest

from shared.auth import LEEWAY_SECONDS, AuthError, AuthUnavailable, TokenVerifier, bearer_token
from tests.conftest import JWT_SECRET, Jwks, mint_token


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": str(uuid.uuid4()), "aud": "authenticated", "role": "authenticated",
            "iat": now, "exp": now + 60, **overrides}  # fmt: skip


def hs256(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), JWT_SECRET, algorithm="HS256")


verifier = TokenVerifier(JWT_SECRET, None, "authenticated")


def test_valid_token_gives_its_claims() -> None:
    user = uuid.uuid4()
    assert verifier.verify(mint_token(user))["sub"] == str(user)


def test_small_clock_skew_is_tolerated() -> None:
    now = int(time.time())
    ahead = now + LEEWAY_SECONDS // 2  # Supabase Auth's clock a little ahead of ours
    assert verifier.verify(hs256(iat=ahead, nbf=ahead))
    assert verifier.verify(hs256(exp=now - LEEWAY_SECONDS // 2))


@pytest.mark.parametrize(
    "token",
    [
        hs256(exp=int(time.time()) - LEEWAY_SECONDS - 5),
        hs256(aud="anon"),
        hs256(sub="not-a-uuid"),
        jwt.encode({k: v for k, v in claims().items() if k != "sub"}, JWT_SECRET),
        jwt.encode(claims(), "another-secret-of-at-least-32-characters!", algorithm="HS256"),
        jwt.encode(claims(), JWT_SECRET * 2, algorithm="HS512"),
        "not-a-jwt",
    ],
    ids=["expired", "audience", "sub", "no-sub", "signature", "algorithm", "garbage"],
)
def test_bad_tokens_are_auth_errors(token: str) -> None:
    with pytest.raises(AuthError):
        verifier.verify(token)


def test_jwks_keys_are_fetched_once(jwks: Jwks) -> None:
    remote = TokenVerifier(None, jwks.url + "/jwks.json", "authenticated")
    before = jwks.fetches
    for _ in range(3):
        assert remote.verify(mint_token(uuid.uuid4(), rsa=jwks))
    assert jwks.fetches - before == 1


def test_unreachable_jwks_is_unavailable_not_unauthorized(jwks: Jwks) -> None:
    remote = TokenVerifier(None, "http://127.0.0.1:9/jwks.json", "authenticated")
    with pytest.raises(AuthUnavailable):
        remote.verify(mint_token(uuid.uuid4(), rsa=jwks))


def test_asymmetric_token_without_jwks_is_refused(jwks: Jwks) -> None:
    with pytest.raises(AuthError):
        verifier.verify(mint_token(uuid.uuid4(), rsa=jwks))


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("", None), (None, None)],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token
