"""Credentials, pure: roles and the `Principal`, passwords, API keys, ids, identity hashes, JWTs.

Nothing here reads a request or the database (`auth.py` does: request -> Principal)."""
from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .errors import Forbidden, InvalidToken
from .settings import Settings

ADMIN, AGENT, VISITOR = "admin", "agent", "visitor"
SECRET_KEY, PUBLISHABLE_KEY = "secret_key", "publishable_key"
STAFF_ROLES = (ADMIN, AGENT)  # accounts whose tokens are checked against the database
ALGORITHM = "HS256"
PASSWORD_MIN = 8
PASSWORD_MAX = 1024  # argon2 hashes anything, but nobody needs more

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
_DUMMY_HASH = _hasher.hash("not-a-real-password-" + secrets.token_hex(8))


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role, a tenant, and the subject's id within it."""

    role: str  # admin | agent | visitor | secret_key | publishable_key
    tenant_id: str
    subject: str  # user id, agent id, session id (visitor) or API key id
    session_id: str | None = None  # visitor tokens: the one session they may read
    user_id: str | None = None  # visitor tokens: the verified userId
    claims: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_staff(self) -> bool:
        """True for admins, agents and secret keys (tenant-wide access)."""
        return self.role in (ADMIN, AGENT, SECRET_KEY)

    def check_tenant(self, tenant_id: str | None) -> None:
        """Refuse a request naming another tenant."""
        if tenant_id is not None and tenant_id != self.tenant_id:
            raise Forbidden("This credential does not belong to that tenant")


# Passwords ---------------------------------------------------------------------------------

async def hash_password(password: str) -> str:
    """Hash with argon2id, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, _hasher.hash, password)


@functools.cache
def common_passwords() -> frozenset[str]:
    """The passwords refused as too common (the package's data/common-passwords.txt), lower case."""
    text = resources.files(__package__).joinpath("data/common-passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def password_problem(password: str) -> str | None:
    """Say why a new password is refused (too short, too long, too common), or None."""
    if len(password) < PASSWORD_MIN:
        return f"must have at least {PASSWORD_MIN} characters"
    if len(password) > PASSWORD_MAX:
        return f"must have at most {PASSWORD_MAX} characters"
    if password.lower() in common_passwords():
        return "is one of the most common passwords; choose another"
    return None


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password; with no hash, spend the same time on a dummy one and say no."""

    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.get_running_loop().run_in_executor(None, check)


# API keys ----------------------------------------------------------------------------------

def new_api_key(kind: str) -> tuple[str, str, str]:
    """Return (key, sha256 hex, display prefix) for a new `publishable` or `secret` key."""
    key = ("pk_" if kind == "publishable" else "sk_") + secrets.token_urlsafe(24)
    return key, hash_api_key(key), key[:11]


def hash_api_key(key: str) -> str:
    """The stored form of an API key (keys are random, so a plain sha256 suffices)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_session_secret() -> tuple[str, str]:
    """A session's resume secret (`sessionSecret`, SPEC section 12) and the hash kept in its place."""
    secret = secrets.token_urlsafe(32)
    return secret, hash_api_key(secret)


def random_id(prefix: str, nbytes: int = 9) -> str:
    """An id like `tenant-Ab3...` or `widget-...`."""
    return f"{prefix}-{secrets.token_urlsafe(nbytes).replace('_', '').replace('-', '')[:12].lower()}"


def user_hash(identity_secret: str, user_id: str) -> str:
    """Hex HMAC-SHA256 of a userId with the tenant's identity secret."""
    return hmac.new(identity_secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def user_hash_valid(identity_secret: str, user_id: str, given: str | None) -> bool:
    """Compare a claimed userHash in constant time."""
    return bool(given) and hmac.compare_digest(user_hash(identity_secret, user_id), str(given).lower())


# JWTs --------------------------------------------------------------------------------------

def issue_token(settings: Settings, *, subject: str, role: str, tenant_id: str, ttl: int | None = None, **extra: Any) -> str:
    """Sign an HS256 token with the SPEC's claims."""
    now = int(time.time())
    if ttl is None:
        ttl = settings.visitor_token_ttl if role == VISITOR else settings.admin_token_ttl
    claims = {
        "sub": str(subject),
        "role": role,
        "tenant": tenant_id,
        "iat": now,
        "exp": now + ttl,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        **{k: v for k, v in extra.items() if v is not None},
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)


def verify_token(settings: Settings, token: str) -> Principal:
    """Verify signature, algorithm, time, issuer and audience; return the Principal."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["sub", "role", "tenant", "iat", "exp", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("Token has expired") from None
    except jwt.PyJWTError:
        raise InvalidToken("Invalid token") from None
    role = claims.get("role")
    if role not in (ADMIN, AGENT, VISITOR) or not isinstance(claims.get("tenant"), str):
        raise InvalidToken("Invalid token")
    return Principal(
        role=role,
        tenant_id=claims["tenant"],
        subject=str(claims["sub"]),
        session_id=claims.get("sid") if role == VISITOR else None,
        user_id=claims.get("uid") if role == VISITOR else None,
        claims=claims,
    )
