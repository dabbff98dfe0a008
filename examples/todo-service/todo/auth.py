"""API tokens: issuing them and checking them on every request."""

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32


class AuthError(Exception):
    """The request has no valid token."""


def issue_token() -> tuple[str, str]:
    """Return a new token and the hash we store for it."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def require_token(headers: dict[str, str], stored_hashes: set[str]) -> str:
    """Check the Authorization header; raise AuthError unless it holds a known token."""
    value = headers.get("Authorization", "")
    if not value.startswith("Bearer "):
        raise AuthError("missing bearer token")
    digest = hash_token(value.removeprefix("Bearer "))
    if not any(hmac.compare_digest(digest, known) for known in stored_hashes):
        raise AuthError("unknown token")
    return digest
