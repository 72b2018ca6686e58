"""Token -> Principal: verify `Authorization: Bearer <jwt>` and read the hub's claims."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.types import Options

from hub.errors import Unauthenticated
from hub.settings import Settings

logger = logging.getLogger(__name__)

KNOWN_ROLES = frozenset({"admin", "manager", "analyst", "partner", "dpo"})
ANONYMOUS_CLIENT_ID = "anonymous"
MAX_TOKEN_BYTES = 8 * 1024
JWKS_REFRESH_INTERVAL_S = 60.0
JWKS_TIMEOUT_S = 5.0

_HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
_SigningKey = tuple[_PublicKey, str | None]  # the key and the JWK's own `alg`, if it names one

_DECODE_OPTIONS: Options = {
    "require": ["exp"],
    "verify_sub": False,  # checked with the other claims, with a message of our own
    # Times are checked by `_check_times` against the injected clock, not PyJWT's.
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "enforce_minimum_key_length": True,
}
# Checked in order: InvalidSignatureError is a DecodeError, so it comes first.
_PYJWT_REFUSALS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.InvalidSignatureError, "Token signature is invalid."),
    (jwt.DecodeError, "Token is malformed."),
    (jwt.InvalidAudienceError, "Token audience is wrong."),
    (jwt.InvalidIssuerError, "Token issuer is wrong."),
    (jwt.InvalidAlgorithmError, "Token algorithm is not allowed."),
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who calls: the verified claims of a token, or `ANONYMOUS` without one."""

    subject: str | None
    tenant: str | None
    roles: frozenset[str]
    scopes: frozenset[str] | None
    """The scopes the token names; None when it has no `scope` claim (an empty claim names
    none, and so narrows the roles to nothing)."""
    campaigns: frozenset[str] | None
    purpose: str | None
    client_id: str

    @property
    def is_anonymous(self) -> bool:
        return self == ANONYMOUS


ANONYMOUS = Principal(None, None, frozenset(), frozenset(), None, None, ANONYMOUS_CLIENT_ID)


class Authenticator:
    """Verifies bearer tokens against the configured secret or JWKS; one per app."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._transport = transport
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._keys: dict[str, _SigningKey] = {}
        self._fetched_at: float | None = None
        self._fetch_failed = False
        self._lock = asyncio.Lock()

    async def authenticate(self, authorization: str | None) -> Principal:
        """None/empty header -> ANONYMOUS; else verify 'Bearer <jwt>' or raise Unauthenticated.

        The message of every refusal names the check that failed and nothing internal.
        """
        if not authorization:
            return ANONYMOUS
        parts = authorization.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise Unauthenticated("Authorization header must be 'Bearer <token>'.")
        token = parts[1]
        if len(token.encode()) > MAX_TOKEN_BYTES:
            raise Unauthenticated("Token is larger than 8 KiB.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("Token is malformed.") from None
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise Unauthenticated("Token algorithm is missing.")
        key = await self._key_for(alg, header.get("kid"))
        claims = self._decode(token, key, alg)
        self._check_times(claims)
        return _principal_from(claims)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _key_for(self, alg: str, kid: str | None) -> str | _PublicKey:
        """The key that may verify `alg`: the secret for HMAC, a JWKS key otherwise, never both."""
        settings = self._settings
        allowed = alg in settings.jwt_algorithms
        if allowed and alg in _HMAC_ALGORITHMS and settings.jwt_secret is not None:
            return settings.jwt_secret
        url = settings.jwt_jwks_url
        if not allowed or alg in _HMAC_ALGORITHMS or url is None:
            # repr() of a short prefix: the alg comes from the caller and is echoed escaped.
            raise Unauthenticated(f"Token algorithm {alg[:16]!r} is not allowed.")
        if kid is None:
            raise Unauthenticated("Token signing key 'kid' is missing.")
        if kid not in self._keys:
            async with self._lock:  # concurrent requests with a new kid share one fetch
                last = self._fetched_at
                if kid not in self._keys and (
                    last is None or self._clock() - last >= JWKS_REFRESH_INTERVAL_S
                ):
                    await self._fetch_keys(url)
        if kid not in self._keys:
            if self._fetch_failed:
                raise Unauthenticated("Token signing keys are unavailable.")
            raise Unauthenticated("Token signing key 'kid' is unknown.")
        key, key_alg = self._keys[kid]
        if not _fits(key, key_alg, alg):
            raise Unauthenticated("Token algorithm does not match its signing key.")
        return key

    async def _fetch_keys(self, url: str) -> None:
        # A failed attempt counts too: an unreachable JWKS is not hammered once per request.
        self._fetched_at = self._clock()
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self._transport, timeout=JWKS_TIMEOUT_S)
        try:
            response = await self._client.get(url)
            response.raise_for_status()
            document = response.json()
            if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
                raise ValueError("the document has no 'keys' list")
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("JWKS fetch from %s failed: %r", url, exc)
            self._fetch_failed = True
            return
        self._fetch_failed = False
        self._keys = {
            jwk["kid"]: key for jwk in document["keys"] if (key := _signing_key(jwk)) is not None
        }

    def _decode(self, token: str, key: str | _PublicKey, alg: str) -> dict[str, Any]:
        audience, issuer = self._settings.jwt_audience, self._settings.jwt_issuer
        try:
            return jwt.decode(token, key, [alg], _DECODE_OPTIONS, audience=audience, issuer=issuer)
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"Token claim '{exc.claim}' is missing.") from None
        except jwt.InvalidKeyError as exc:
            logger.warning("Token signing key is unusable for %s: %s", alg, exc)
            raise Unauthenticated("Token signing key is unusable.") from None
        except jwt.PyJWTError as exc:
            message = next((m for kind, m in _PYJWT_REFUSALS if isinstance(exc, kind)), None)
            raise Unauthenticated(message or "Token is invalid.") from None

    def _check_times(self, claims: dict[str, Any]) -> None:
        for name in ("exp", "nbf", "iat"):
            if name in claims and not _is_number(claims[name]):
                raise Unauthenticated(f"Token claim '{name}' must be a number.")
        now, leeway = self._clock(), self._settings.jwt_leeway_s
        if claims["exp"] <= now - leeway:
            raise Unauthenticated("Token has expired.")
        if claims.get("nbf", now) > now + leeway:
            raise Unauthenticated("Token is not yet valid.")
        if claims.get("iat", now) > now + leeway:
            raise Unauthenticated("Token is issued in the future.")


def issue_token(
    settings: Settings,
    *,
    subject: str,
    tenant: str,
    roles: Sequence[str],
    scopes: Sequence[str] = (),
    purpose: str | None = None,
    campaigns: Sequence[str] | None = None,
    client_id: str | None = None,
    ttl_s: int = 3600,
    now: float | None = None,
) -> str:
    """Development tokens: HS256 with `settings.jwt_secret`, `iss`/`aud` from settings.

    Raise ValueError when no secret is configured (only a JWKS), when HS256 is not accepted,
    or for an unknown role, so that `hub token` never prints a token the hub would refuse.
    """
    secret = settings.jwt_secret
    if secret is None:
        raise ValueError("development tokens need HUB_JWT_SECRET; only a JWKS is configured")
    if "HS256" not in settings.jwt_algorithms:
        raise ValueError("development tokens are HS256, which HUB_JWT_ALGORITHMS does not accept")
    if len(secret.encode()) < 32:
        raise ValueError("HUB_JWT_SECRET must be at least 32 bytes for HS256")
    if unknown := sorted(set(roles) - KNOWN_ROLES):
        raise ValueError(f"unknown roles: {', '.join(unknown)}")
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject,
        "tenant": tenant,
        "roles": list(roles),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + ttl_s,
        "scope": " ".join(scopes) or None,
        "purpose": purpose,
        "campaigns": None if campaigns is None else list(campaigns),
        "client_id": client_id,
    }
    present = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(present, secret, algorithm="HS256")


def _principal_from(claims: dict[str, Any]) -> Principal:
    subject = _text(claims, "sub")
    client_id = _text(claims, "client_id") or subject
    if client_id is None:
        raise Unauthenticated("Token claim 'sub' is missing.")
    if client_id == ANONYMOUS_CLIENT_ID:
        raise Unauthenticated("Token claim 'client_id' must not be 'anonymous'.")
    roles = _texts(claims, "roles", "a list of known roles", allowed=KNOWN_ROLES)
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise Unauthenticated("Token claim 'scope' must be a space-separated string.")
    return Principal(
        subject=subject,
        tenant=_text(claims, "tenant"),
        roles=roles or frozenset(),
        scopes=frozenset(scope.split()) if "scope" in claims else None,
        campaigns=_texts(claims, "campaigns", "a list of strings"),
        purpose=_text(claims, "purpose"),
        client_id=client_id,
    )


def _text(claims: dict[str, Any], name: str) -> str | None:
    if name not in claims:
        return None
    value = claims[name]
    if not isinstance(value, str) or not value:
        raise Unauthenticated(f"Token claim '{name}' must be a non-empty string.")
    return value


def _texts(
    claims: dict[str, Any], name: str, shape: str, *, allowed: frozenset[str] | None = None
) -> frozenset[str] | None:
    # Present-but-null is refused: a null `campaigns` must not read as "no restriction".
    if name not in claims:
        return None
    value = claims[name]
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise Unauthenticated(f"Token claim '{name}' must be {shape}.")
    if allowed is not None and not allowed.issuperset(value):
        raise Unauthenticated(f"Token claim '{name}' must be {shape}.")
    return frozenset(value)


def _signing_key(jwk: object) -> _SigningKey | None:
    """The RSA or EC signature key of one JWKS entry; oct, enc and broken entries are skipped."""
    if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
        return None
    if jwk.get("kty") not in ("RSA", "EC") or jwk.get("use", "sig") != "sig":
        return None
    try:
        key = jwt.PyJWK(jwk).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        logger.warning("JWKS key %r skipped: %s", jwk["kid"], exc)
        return None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return None  # a private key published by mistake is not used either
    alg = jwk.get("alg")
    return key, alg if isinstance(alg, str) else None


def _fits(key: _PublicKey, key_alg: str | None, alg: str) -> bool:
    if key_alg is not None and key_alg != alg:
        return False
    if alg.startswith("RS"):
        return isinstance(key, rsa.RSAPublicKey)
    return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == _EC_CURVES.get(alg)


def _is_number(value: object) -> bool:
    finite_float = isinstance(value, float) and math.isfinite(value)
    return finite_float or (isinstance(value, int) and not isinstance(value, bool))
