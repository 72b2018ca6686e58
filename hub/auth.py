"""Token -> Principal: verify `Authorization: Bearer <jwt>` and read the hub's claims."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.types import Options

from hub.errors import Unauthenticated
from hub.settings import MIN_JWT_SECRET_BYTES, Settings
from hub.store.tenancy import bind_tenant

if TYPE_CHECKING:
    from hub.tenants import TenantGate

logger = logging.getLogger(__name__)

KNOWN_ROLES = frozenset({"admin", "manager", "analyst", "partner", "dpo"})
ANONYMOUS_CLIENT_ID = "anonymous"
MAX_TOKEN_BYTES = 8 * 1024
JWKS_REFRESH_INTERVAL_S = 60.0
"""The least time between two JWKS fetches (for an unknown `kid`, after a failure)."""
JWKS_MAX_AGE_S = 600.0
"""How long JWKS keys are used before a refresh, when the answer has no `max-age`."""
JWKS_MAX_AGE_RANGE_S = (60.0, 86_400.0)
"""The bounds put on a JWKS answer's `Cache-Control: max-age`."""
JWKS_FAILURE_GRACE_S = 3600.0
"""How long past their age the last keys still verify while refreshes fail; then none does."""
JWKS_TIMEOUT_S = 5.0
MAX_CLAIM_CHARS = {
    "sub": 200,
    "client_id": 200,
    "tenant": 64,
    "purpose": 64,
    "campaigns": 40,
    "roles": 32,
    "scope": 1024,
}
"""The longest text each claim may hold (each entry, for lists): what the store's columns hold
(the audit trail's principal and client, tenant and purpose; a campaign's id)."""
_NOT_TEXT = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
"""Unicode categories a claim must not contain: controls, format characters (bidi overrides,
invisible joiners), surrogates, private use, line and paragraph separators."""

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


VERIFIED_KEPT = 4096
"""Tokens whose signature and claims were checked, remembered by their hash."""
VERIFIED_KEPT_S = 60.0
"""How long a checked token is taken as checked (its times are checked on every use; new
signing keys end it at once)."""


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


@dataclass(frozen=True, slots=True)
class _Verified:
    claims: dict[str, Any]
    principal: Principal
    at: float
    generation: int
    keys_fresh_until: float
    """When the keys that verified it are due to be fetched again (JWKS); then it is
    verified again, with them."""


class Authenticator:
    """Verifies bearer tokens against the configured secret or JWKS; one per app.

    JWKS keys are used for the answer's `Cache-Control: max-age` (`JWKS_MAX_AGE_S` without
    one, within `JWKS_MAX_AGE_RANGE_S`), then fetched again before the next token that needs
    them, so a key the identity provider withdrew stops verifying within that age. While the
    refresh fails, the last keys verify for `JWKS_FAILURE_GRACE_S` more, then none does."""

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
        self._keys_fresh_until = -math.inf
        self._attempted_at: float | None = None
        self._fetch_failed = False
        self._lock = asyncio.Lock()
        self._verified: OrderedDict[bytes, _Verified] = OrderedDict()
        self._keys_generation = 0
        self.tenants: TenantGate | None = None
        """Refuses the tokens of suspended tenants, once the store is open."""

    async def authenticate(self, authorization: str | None) -> Principal:
        """None/empty header -> ANONYMOUS; else verify 'Bearer <jwt>' or raise Unauthenticated;
        a token of a suspended tenant is `TenantSuspended` (403), on every path that
        authenticates.

        The message of every refusal names the check that failed and nothing internal.
        """
        principal, _expires_at = await self.authenticate_until(authorization)
        return principal

    async def authenticate_until(self, authorization: str | None) -> tuple[Principal, float | None]:
        """`authenticate`, and when the token expires (its `exp`, Unix seconds; None without
        a token): a long-lived connection ends then.

        Every path that serves a caller comes here: the rest of the caller's context (its
        task, and the tasks it starts) is bound to the caller's tenant, whose rows alone the
        store shows on PostgreSQL (`hub.store.tenancy`); to no tenant's rows until the token
        is verified, and for an anonymous caller or a refused token."""
        bind_tenant(None)
        principal, expires_at = await self._verify(authorization)
        if self.tenants is not None and not principal.is_anonymous:
            await self.tenants.check(principal.tenant)
        bind_tenant(principal.tenant)
        return principal, expires_at

    async def _verify(self, authorization: str | None) -> tuple[Principal, float | None]:
        if not authorization:
            return ANONYMOUS, None
        parts = authorization.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise Unauthenticated("Authorization header must be 'Bearer <token>'.")
        token = parts[1]
        if len(token.encode()) > MAX_TOKEN_BYTES:
            raise Unauthenticated("Token is larger than 8 KiB.")
        digest = hashlib.sha256(token.encode()).digest()
        verified = self._verified.get(digest)
        now = self._clock()
        if (
            verified is not None
            and verified.generation == self._keys_generation
            and now - verified.at < VERIFIED_KEPT_S
            and now < verified.keys_fresh_until
        ):
            self._check_times(verified.claims)
            return verified.principal, float(verified.claims["exp"])
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
        principal = _principal_from(claims)
        fresh_until = math.inf if alg in _HMAC_ALGORITHMS else self._keys_fresh_until
        self._verified[digest] = _Verified(
            claims, principal, now, self._keys_generation, fresh_until
        )
        self._verified.move_to_end(digest)
        if len(self._verified) > VERIFIED_KEPT:
            self._verified.popitem(last=False)
        return principal, float(claims["exp"])

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
        if kid not in self._keys or self._clock() >= self._keys_fresh_until:
            async with self._lock:  # concurrent requests share one fetch
                if self._should_fetch(kid):
                    await self._fetch_keys(url)
        in_grace = self._clock() < self._keys_fresh_until + JWKS_FAILURE_GRACE_S
        keys = self._keys if in_grace else {}
        if kid not in keys:
            if self._fetch_failed:
                raise Unauthenticated("Token signing keys are unavailable.")
            raise Unauthenticated("Token signing key 'kid' is unknown.")
        key, key_alg = keys[kid]
        if not _fits(key, key_alg, alg):
            raise Unauthenticated("Token algorithm does not match its signing key.")
        return key

    def _should_fetch(self, kid: str) -> bool:
        """Keys older than their `max-age`, or an unknown `kid`: fetch, but at most once a
        minute (a request that waited for another's fetch uses its keys)."""
        now, attempted = self._clock(), self._attempted_at
        if attempted is not None and now - attempted < JWKS_REFRESH_INTERVAL_S:
            return False
        return kid not in self._keys or now >= self._keys_fresh_until

    async def _fetch_keys(self, url: str) -> None:
        # A failed attempt counts too: an unreachable JWKS is not hammered once per request.
        fetched_at = self._attempted_at = self._clock()
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
        self._keys_generation += 1  # tokens verified with the old keys are verified again
        self._keys_fresh_until = fetched_at + _max_age_s(response.headers.get("cache-control"))

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
    if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise ValueError(f"HUB_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes for HS256")
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


DEMO_TOKEN_TTL_S = 7 * 24 * 3600


def issue_demo_token(settings: Settings) -> str:
    """The demo's token: a campaign manager of the tenant acme, for a week; the one
    `hub serve --demo` prints and its GraphiQL opens with."""
    return issue_token(
        settings,
        subject="demo-manager@acme",
        tenant="acme",
        roles=["manager"],
        purpose="campaign_management",
        client_id="graphiql-demo",
        ttl_s=DEMO_TOKEN_TTL_S,
    )


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
    _check_text("scope", scope)
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
    _check_text(name, value)
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
    for item in value:
        _check_text(name, item)
    return frozenset(value)


def _check_text(name: str, value: str) -> None:
    """Refuse a claim the hub could not write down as it is (the audit trail, logs): not valid
    Unicode, a control or invisible character, or longer than its column. The message names
    the claim and never repeats its value."""
    if len(value) > MAX_CLAIM_CHARS[name]:
        raise Unauthenticated(
            f"Token claim '{name}' is longer than {MAX_CLAIM_CHARS[name]} characters."
        )
    if value.isascii():
        if value.isprintable():
            return
    elif not any(unicodedata.category(char) in _NOT_TEXT for char in value):
        return
    if any(unicodedata.category(char) == "Cs" for char in value):
        raise Unauthenticated(f"Token claim '{name}' is not valid Unicode text.")
    raise Unauthenticated(f"Token claim '{name}' contains a control or invisible character.")


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


def _max_age_s(cache_control: str | None) -> float:
    """How long a JWKS answer is used: its `max-age` (`no-cache`/`no-store`: none), within
    `JWKS_MAX_AGE_RANGE_S`; `JWKS_MAX_AGE_S` when it names none."""
    shortest, longest = JWKS_MAX_AGE_RANGE_S
    for directive in (cache_control or "").split(","):
        name, _, value = directive.strip().partition("=")
        name, value = name.strip().lower(), value.strip().strip('"')
        if name in ("no-cache", "no-store"):
            return shortest
        if name == "max-age" and value.isascii() and value.isdecimal():
            return min(max(float(value), shortest), longest)
    return JWKS_MAX_AGE_S


def _fits(key: _PublicKey, key_alg: str | None, alg: str) -> bool:
    if key_alg is not None and key_alg != alg:
        return False
    if alg.startswith("RS"):
        return isinstance(key, rsa.RSAPublicKey)
    return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == _EC_CURVES.get(alg)


def _is_number(value: object) -> bool:
    finite_float = isinstance(value, float) and math.isfinite(value)
    return finite_float or (isinstance(value, int) and not isinstance(value, bool))
