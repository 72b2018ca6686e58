"""Token attacks and round trips against `Authenticator.authenticate` and `issue_token`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from hub.auth import ANONYMOUS, MAX_CLAIM_CHARS, Authenticator, Principal, issue_token
from hub.errors import Unauthenticated
from hub.settings import DEV_JWT_SECRET, Settings
from hub.store.tables import AuditEventRow, CampaignRow, ErasureRow
from tests.conftest import MakeToken
from tests.helpers import codes, gql

NOW = 1_800_000_000.0
ISSUER = "influencer-hub"
AUDIENCE = "influencer-hub"
JWKS_URL = "https://keys.test/jwks.json"
OTHER_SECRET = "another-secret-of-at-least-32-bytes!!"
OCT_SECRET = "a-symmetric-key-published-in-the-jwks"
DROP = object()  # a claim override that removes the claim

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_P384_KEY = ec.generate_private_key(ec.SECP384R1())
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def dev_settings() -> Settings:
    return Settings(
        jwt_secret=DEV_JWT_SECRET,
        jwt_jwks_url=None,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_algorithms=["HS256"],
        jwt_leeway_s=30,
    )


def jwks_settings() -> Settings:
    return Settings(
        jwt_secret=None,
        jwt_jwks_url=JWKS_URL,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_algorithms=["RS256", "ES256"],
        jwt_leeway_s=30,
    )


def mixed_settings() -> Settings:
    """HS256 with the dev secret and RS256 from the JWKS, both accepted."""
    return Settings(
        jwt_secret=DEV_JWT_SECRET,
        jwt_jwks_url=JWKS_URL,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_algorithms=["HS256", "RS256"],
        jwt_leeway_s=30,
    )


def hs256_without_secret_settings() -> Settings:
    """HS256 listed by mistake while only a JWKS is configured."""
    return Settings(
        jwt_secret=None,
        jwt_jwks_url=JWKS_URL,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_algorithms=["HS256", "RS256"],
        jwt_leeway_s=30,
    )


SETTINGS: dict[str, Callable[[], Settings]] = {
    "dev": dev_settings,
    "jwks": jwks_settings,
    "mixed": mixed_settings,
    "hs256_without_secret": hs256_without_secret_settings,
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "tenant": "acme",
        "roles": ["analyst"],
        "scope": "metrics:read",
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 600,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not DROP}


def hs(*, secret: str = DEV_JWT_SECRET, **overrides: object) -> str:
    """Signed by hand: PyJWT's encoder would refuse some of the claim types under test."""
    return forge({"alg": "HS256", "typ": "JWT"}, claims(**overrides), hmac_key=secret.encode())


def rs(
    *,
    kid: str | None = "rsa-1",
    key: rsa.RSAPrivateKey = RSA_KEY,
    alg: str = "RS256",
    **overrides: object,
) -> str:
    headers = None if kid is None else {"kid": kid}
    return "Bearer " + jwt.encode(claims(**overrides), key, algorithm=alg, headers=headers)


def es(*, kid: str = "ec-1", **overrides: object) -> str:
    return "Bearer " + jwt.encode(
        claims(**overrides), EC_KEY, algorithm="ES256", headers={"kid": kid}
    )


def forge(header: dict[str, object], payload: object, *, hmac_key: bytes | None) -> str:
    """A token built by hand, as an attacker would: HS256 over any key, or no signature."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b""
    if hmac_key is not None:
        signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"Bearer {signing_input}.{b64(signature)}"


def tampered() -> str:
    """A genuine dev token whose payload is swapped for one that claims the admin role."""
    header, _, signature = hs().removeprefix("Bearer ").split(".")
    payload = b64(json.dumps(claims(roles=["admin"])).encode())
    return f"Bearer {header}.{payload}.{signature}"


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    return {
        **RSAAlgorithm.to_jwk(key.public_key(), as_dict=True),
        "kid": kid,
        "alg": "RS256",
        "use": "sig",
    }


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    # No `alg`: the key type and curve alone must decide which algorithms it verifies.
    return {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid}


PUBLISHED = [
    rsa_jwk(RSA_KEY, "rsa-1"),
    ec_jwk(EC_KEY, "ec-1"),
    ec_jwk(EC_P384_KEY, "ec-p384"),
    {**rsa_jwk(RSA_KEY, "rsa-for-rs384"), "alg": "RS384"},
    {**rsa_jwk(OTHER_RSA_KEY, "rsa-for-encryption"), "use": "enc"},
    {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
    {"kty": "oct", "kid": "oct-1", "k": b64(OCT_SECRET.encode())},
]


class JwksServer:
    """The identity provider's JWKS endpoint behind `httpx.MockTransport`; counts fetches."""

    def __init__(
        self,
        keys: list[dict[str, Any]],
        *,
        status: int = 200,
        body: bytes | None = None,
        cache_control: str | None = None,
    ) -> None:
        self.keys = keys
        self.status = status
        self.body = body
        self.cache_control = cache_control
        self.urls: list[str] = []

    @property
    def fetches(self) -> int:
        return len(self.urls)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        await asyncio.sleep(0)  # let concurrent requests interleave, as a real fetch would
        headers = {} if self.cache_control is None else {"Cache-Control": self.cache_control}
        if self.body is not None:
            return httpx.Response(self.status, content=self.body, headers=headers)
        return httpx.Response(self.status, json={"keys": self.keys}, headers=headers)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


def oversize() -> str:
    return hs(padding="x" * 9000)


ATTACKS = [
    # (id, settings, Authorization header, exact message, JWKS fetches)
    ("expired", "dev", hs(exp=int(NOW) - 30), "Token has expired.", 0),
    ("long_expired", "dev", hs(exp=int(NOW) - 86400), "Token has expired.", 0),
    ("not_yet_valid", "dev", hs(nbf=int(NOW) + 31), "Token is not yet valid.", 0),
    ("issued_in_the_future", "dev", hs(iat=int(NOW) + 31), "Token is issued in the future.", 0),
    ("wrong_issuer", "dev", hs(iss="evil-idp"), "Token issuer is wrong.", 0),
    ("issuer_not_a_string", "dev", hs(iss=["influencer-hub"]), "Token issuer is wrong.", 0),
    ("wrong_audience", "dev", hs(aud="another-api"), "Token audience is wrong.", 0),
    ("audience_list_without_us", "dev", hs(aud=["a", "b"]), "Token audience is wrong.", 0),
    ("missing_exp", "dev", hs(exp=DROP), "Token claim 'exp' is missing.", 0),
    ("missing_iss", "dev", hs(iss=DROP), "Token claim 'iss' is missing.", 0),
    ("missing_aud", "dev", hs(aud=DROP), "Token claim 'aud' is missing.", 0),
    ("other_secret", "dev", hs(secret=OTHER_SECRET), "Token signature is invalid.", 0),
    ("payload_swapped_for_admin", "dev", tampered(), "Token signature is invalid.", 0),
    ("signature_stripped", "dev", hs().rsplit(".", 1)[0] + ".", "Token signature is invalid.", 0),
    (
        "alg_none",
        "dev",
        forge({"alg": "none", "typ": "JWT"}, claims(), hmac_key=None),
        "Token algorithm 'none' is not allowed.",
        0,
    ),
    (
        "alg_none_upper_case",
        "dev",
        forge({"alg": "NONE"}, claims(roles=["admin"]), hmac_key=None),
        "Token algorithm 'NONE' is not allowed.",
        0,
    ),
    (
        "alg_missing",
        "dev",
        forge({"typ": "JWT"}, claims(), hmac_key=None),
        "Token algorithm is missing.",
        0,
    ),
    (
        "alg_with_control_characters_is_echoed_escaped",
        "dev",
        forge({"alg": "none\n<b>"}, claims(), hmac_key=None),
        "Token algorithm 'none\\n<b>' is not allowed.",
        0,
    ),
    (
        "hs256_signed_with_the_rsa_public_key_when_only_rs256_is_allowed",
        "jwks",
        forge({"alg": "HS256", "kid": "rsa-1"}, claims(), hmac_key=RSA_PUBLIC_PEM),
        "Token algorithm 'HS256' is not allowed.",
        0,
    ),
    (
        "hs256_signed_with_the_rsa_public_key_when_hs256_is_listed_without_a_secret",
        "hs256_without_secret",
        forge({"alg": "HS256", "kid": "rsa-1"}, claims(), hmac_key=RSA_PUBLIC_PEM),
        "Token algorithm 'HS256' is not allowed.",
        0,
    ),
    (
        "hs256_signed_with_the_rsa_public_key_is_checked_against_the_secret_only",
        "mixed",
        forge({"alg": "HS256", "kid": "rsa-1"}, claims(), hmac_key=RSA_PUBLIC_PEM),
        "Token signature is invalid.",
        0,
    ),
    (
        "hs256_signed_with_a_symmetric_jwks_key",
        "mixed",
        forge({"alg": "HS256", "kid": "oct-1"}, claims(), hmac_key=OCT_SECRET.encode()),
        "Token signature is invalid.",
        0,
    ),
    (
        "rs256_naming_a_symmetric_jwks_key",
        "jwks",
        rs(kid="oct-1"),
        "Token signing key 'kid' is unknown.",
        1,
    ),
    ("unknown_kid", "jwks", rs(kid="rsa-9"), "Token signing key 'kid' is unknown.", 1),
    ("missing_kid", "jwks", rs(kid=None), "Token signing key 'kid' is missing.", 0),
    (
        "kid_not_a_string",
        "jwks",
        forge({"alg": "RS256", "kid": 5}, claims(), hmac_key=None),
        "Token is malformed.",
        0,
    ),
    (
        "rs256_signed_by_another_key",
        "jwks",
        rs(key=OTHER_RSA_KEY),
        "Token signature is invalid.",
        1,
    ),
    (
        "es256_naming_an_rs256_key",
        "jwks",
        es(kid="rsa-1"),
        "Token algorithm does not match its signing key.",
        1,
    ),
    (
        "rs256_naming_an_ec_key",
        "jwks",
        rs(kid="ec-1"),
        "Token algorithm does not match its signing key.",
        1,
    ),
    (
        "rs256_naming_a_key_published_for_rs384",
        "jwks",
        rs(kid="rsa-for-rs384"),
        "Token algorithm does not match its signing key.",
        1,
    ),
    (
        "es256_naming_a_p384_key",
        "jwks",
        es(kid="ec-p384"),
        "Token algorithm does not match its signing key.",
        1,
    ),
    (
        "rs256_naming_an_encryption_key",
        "jwks",
        rs(kid="rsa-for-encryption", key=OTHER_RSA_KEY),
        "Token signing key 'kid' is unknown.",
        1,
    ),
    (
        "rs256_naming_a_broken_jwks_entry",
        "jwks",
        rs(kid="broken"),
        "Token signing key 'kid' is unknown.",
        1,
    ),
    (
        "rs384_not_in_the_list",
        "jwks",
        rs(alg="RS384"),
        "Token algorithm 'RS384' is not allowed.",
        0,
    ),
    ("rs256_on_a_dev_hub", "dev", rs(), "Token algorithm 'RS256' is not allowed.", 0),
    ("dev_token_on_a_jwks_hub", "jwks", hs(), "Token algorithm 'HS256' is not allowed.", 0),
    ("truncated", "dev", hs()[: len(hs()) // 2], "Token is malformed.", 0),
    ("garbage", "dev", "Bearer not-a-jwt", "Token is malformed.", 0),
    ("garbage_segments", "dev", "Bearer !!!.???.###", "Token is malformed.", 0),
    ("header_not_json", "dev", f"Bearer {b64(b'hello')}.{b64(b'{}')}.", "Token is malformed.", 0),
    (
        "payload_not_an_object",
        "dev",
        forge({"alg": "HS256"}, ["admin"], hmac_key=DEV_JWT_SECRET.encode()),
        "Token is malformed.",
        0,
    ),
    ("oversize", "dev", oversize(), "Token is larger than 8 KiB.", 0),
    (
        "basic_scheme",
        "dev",
        "Basic dXNlcjpwYXNz",
        "Authorization header must be 'Bearer <token>'.",
        0,
    ),
    (
        "no_scheme",
        "dev",
        hs().removeprefix("Bearer "),
        "Authorization header must be 'Bearer <token>'.",
        0,
    ),
    ("scheme_only", "dev", "Bearer", "Authorization header must be 'Bearer <token>'.", 0),
    (
        "two_tokens",
        "dev",
        "Bearer a.b.c d.e.f",
        "Authorization header must be 'Bearer <token>'.",
        0,
    ),
    (
        "roles_a_string",
        "dev",
        hs(roles="admin"),
        "Token claim 'roles' must be a list of known roles.",
        0,
    ),
    (
        "roles_unknown",
        "dev",
        hs(roles=["root"]),
        "Token claim 'roles' must be a list of known roles.",
        0,
    ),
    (
        "roles_not_strings",
        "dev",
        hs(roles=["admin", 1]),
        "Token claim 'roles' must be a list of known roles.",
        0,
    ),
    (
        "campaigns_a_string",
        "dev",
        hs(campaigns="c-1"),
        "Token claim 'campaigns' must be a list of strings.",
        0,
    ),
    (
        "campaigns_null",
        "dev",
        hs(campaigns=None),
        "Token claim 'campaigns' must be a list of strings.",
        0,
    ),
    (
        "campaigns_numbers",
        "dev",
        hs(campaigns=[7]),
        "Token claim 'campaigns' must be a list of strings.",
        0,
    ),
    (
        "scope_a_list",
        "dev",
        hs(scope=["metrics:read"]),
        "Token claim 'scope' must be a space-separated string.",
        0,
    ),
    (
        "tenant_a_number",
        "dev",
        hs(tenant=42),
        "Token claim 'tenant' must be a non-empty string.",
        0,
    ),
    ("tenant_empty", "dev", hs(tenant=""), "Token claim 'tenant' must be a non-empty string.", 0),
    ("sub_a_list", "dev", hs(sub=["user-1"]), "Token claim 'sub' must be a non-empty string.", 0),
    (
        "purpose_a_number",
        "dev",
        hs(purpose=3),
        "Token claim 'purpose' must be a non-empty string.",
        0,
    ),
    ("no_caller", "dev", hs(sub=DROP), "Token claim 'sub' is missing.", 0),
    (
        "client_id_claims_anonymous",
        "dev",
        hs(client_id="anonymous"),
        "Token claim 'client_id' must not be 'anonymous'.",
        0,
    ),
    ("exp_a_string", "dev", hs(exp="tomorrow"), "Token claim 'exp' must be a number.", 0),
    ("exp_a_boolean", "dev", hs(exp=True), "Token claim 'exp' must be a number.", 0),
    ("nbf_not_a_number", "dev", hs(nbf=float("nan")), "Token claim 'nbf' must be a number.", 0),
]


@pytest.mark.parametrize(
    ("settings_name", "authorization", "message", "fetches"),
    [pytest.param(*row[1:], id=row[0]) for row in ATTACKS],
)
async def test_attack_is_refused_with_a_message_naming_the_failed_check(
    settings_name: str, authorization: str, message: str, fetches: int
) -> None:
    server = JwksServer(PUBLISHED)
    authenticator = Authenticator(
        SETTINGS[settings_name](), transport=server.transport, clock=lambda: NOW
    )
    try:
        with pytest.raises(Unauthenticated) as refused:
            await authenticator.authenticate(authorization)
    finally:
        await authenticator.aclose()
    assert refused.value.message == message
    assert refused.value.extensions == {"code": "UNAUTHENTICATED"}
    assert refused.value.__cause__ is None
    assert server.fetches == fetches


async def authenticate(
    settings: Settings, authorization: str | None, *, server: JwksServer | None = None
) -> Principal:
    authenticator = Authenticator(
        settings, transport=None if server is None else server.transport, clock=lambda: NOW
    )
    try:
        return await authenticator.authenticate(authorization)
    finally:
        await authenticator.aclose()


@pytest.mark.parametrize("authorization", [None, ""])
async def test_no_authorization_header_is_the_anonymous_principal(
    authorization: str | None,
) -> None:
    server = JwksServer(PUBLISHED)
    principal = await authenticate(jwks_settings(), authorization, server=server)
    assert principal is ANONYMOUS
    assert principal.is_anonymous
    assert principal.client_id == "anonymous"
    assert (principal.subject, principal.tenant, principal.roles, principal.scopes) == (
        None,
        None,
        frozenset(),
        frozenset(),
    )
    assert server.fetches == 0


async def test_dev_token_round_trips_every_principal_field() -> None:
    settings = dev_settings()
    token = issue_token(
        settings,
        subject="user-7",
        tenant="acme",
        roles=["manager", "analyst"],
        scopes=["campaigns:read", "metrics:read"],
        purpose="campaign_management",
        campaigns=["camp-1", "camp-2"],
        client_id="console",
        ttl_s=600,
        now=NOW,
    )
    principal = await authenticate(settings, f"Bearer {token}")
    assert principal == Principal(
        subject="user-7",
        tenant="acme",
        roles=frozenset({"manager", "analyst"}),
        scopes=frozenset({"campaigns:read", "metrics:read"}),
        campaigns=frozenset({"camp-1", "camp-2"}),
        purpose="campaign_management",
        client_id="console",
    )
    assert not principal.is_anonymous
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    raw = jwt.decode(token, options={"verify_signature": False})
    assert (raw["iss"], raw["aud"], raw["iat"], raw["nbf"], raw["exp"]) == (
        ISSUER,
        AUDIENCE,
        int(NOW),
        int(NOW),
        int(NOW) + 600,
    )


async def test_dev_token_without_optional_claims_is_unrestricted() -> None:
    settings = dev_settings()
    token = issue_token(settings, subject="svc-etl", tenant="globex", roles=["partner"], now=NOW)
    principal = await authenticate(settings, f"bearer {token}")  # the scheme is case-insensitive
    assert principal == Principal(
        subject="svc-etl",
        tenant="globex",
        roles=frozenset({"partner"}),
        scopes=None,
        campaigns=None,
        purpose=None,
        client_id="svc-etl",
    )
    assert set(jwt.decode(token, options={"verify_signature": False})) == {
        "iss",
        "aud",
        "sub",
        "tenant",
        "roles",
        "iat",
        "nbf",
        "exp",
    }


async def test_service_token_without_sub_is_named_by_its_client_id() -> None:
    principal = await authenticate(dev_settings(), hs(sub=DROP, client_id="etl", roles=[]))
    assert (principal.subject, principal.client_id, principal.roles) == (None, "etl", frozenset())
    assert not principal.is_anonymous


async def test_an_empty_scope_claim_names_no_scopes_and_an_absent_one_names_none_at_all() -> None:
    empty = await authenticate(dev_settings(), hs(scope=""))
    blank = await authenticate(dev_settings(), hs(scope="   "))
    absent = await authenticate(dev_settings(), hs(scope=DROP))
    assert empty.scopes == blank.scopes == frozenset()
    assert absent.scopes is None


async def test_an_empty_campaigns_list_restricts_to_no_campaign() -> None:
    principal = await authenticate(dev_settings(), hs(campaigns=[]))
    assert principal.campaigns == frozenset()


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(hs(exp=int(NOW) - 29), id="expired_within_leeway"),
        pytest.param(hs(nbf=int(NOW) + 30), id="not_before_within_leeway"),
        pytest.param(hs(iat=int(NOW) + 30), id="issued_within_leeway"),
        pytest.param(hs(exp=NOW + 0.5), id="fractional_exp"),
        pytest.param(hs(aud=["another-api", AUDIENCE]), id="audience_list_with_us"),
    ],
)
async def test_token_within_the_limits_is_accepted(authorization: str) -> None:
    principal = await authenticate(dev_settings(), authorization)
    assert principal.subject == "user-1"


async def test_token_of_exactly_8_kib_is_accepted() -> None:
    token = next(
        t for n in range(8192) if len(t := hs(padding="x" * n).removeprefix("Bearer ")) == 8192
    )
    principal = await authenticate(dev_settings(), f"Bearer {token}")
    assert principal.tenant == "acme"


@pytest.mark.parametrize(
    ("authorization", "roles"),
    [
        pytest.param(rs(roles=["admin"]), frozenset({"admin"}), id="RS256"),
        pytest.param(es(roles=["dpo", "analyst"]), frozenset({"dpo", "analyst"}), id="ES256"),
    ],
)
async def test_jwks_signed_token_is_verified(authorization: str, roles: frozenset[str]) -> None:
    server = JwksServer(PUBLISHED)
    principal = await authenticate(jwks_settings(), authorization, server=server)
    assert (principal.subject, principal.tenant, principal.roles) == ("user-1", "acme", roles)
    assert principal.scopes == frozenset({"metrics:read"})
    assert server.urls == [JWKS_URL]


async def test_jwks_is_fetched_once_for_two_tokens() -> None:
    server = JwksServer(PUBLISHED)
    authenticator = Authenticator(jwks_settings(), transport=server.transport, clock=lambda: NOW)
    try:
        first = await authenticator.authenticate(rs(sub="user-1"))
        second = await authenticator.authenticate(es(sub="user-2"))
    finally:
        await authenticator.aclose()
    assert (first.subject, second.subject) == ("user-1", "user-2")
    assert server.fetches == 1


async def test_concurrent_requests_share_one_jwks_fetch() -> None:
    server = JwksServer(PUBLISHED)
    authenticator = Authenticator(jwks_settings(), transport=server.transport, clock=lambda: NOW)
    try:
        principals = await asyncio.gather(
            *(authenticator.authenticate(rs(sub=f"u-{i}")) for i in range(5))
        )
    finally:
        await authenticator.aclose()
    assert [p.subject for p in principals] == [f"u-{i}" for i in range(5)]
    assert server.fetches == 1


async def test_unknown_kid_refreshes_the_jwks_at_most_once_per_minute() -> None:
    server = JwksServer(PUBLISHED)
    now = [NOW]
    authenticator = Authenticator(jwks_settings(), transport=server.transport, clock=lambda: now[0])
    unknown = rs(kid="rsa-9")
    fetches_after_each_unknown_kid = []
    try:
        await authenticator.authenticate(rs())
        for seconds_later in (1, 59, 60, 61, 119, 121):
            now[0] = NOW + seconds_later
            with pytest.raises(Unauthenticated, match=r"^Token signing key 'kid' is unknown\.$"):
                await authenticator.authenticate(unknown)
            fetches_after_each_unknown_kid.append(server.fetches)
    finally:
        await authenticator.aclose()
    assert fetches_after_each_unknown_kid == [1, 1, 2, 2, 2, 3]


async def test_a_rotated_key_is_found_by_one_refresh_and_the_retired_key_is_dropped() -> None:
    server = JwksServer([rsa_jwk(RSA_KEY, "rsa-1")])
    now = [NOW]
    authenticator = Authenticator(jwks_settings(), transport=server.transport, clock=lambda: now[0])
    try:
        before = await authenticator.authenticate(rs(kid="rsa-1"))
        server.keys = [rsa_jwk(OTHER_RSA_KEY, "rsa-2")]
        now[0] = NOW + 61
        after = await authenticator.authenticate(rs(kid="rsa-2", key=OTHER_RSA_KEY, sub="user-2"))
        with pytest.raises(Unauthenticated, match=r"^Token signing key 'kid' is unknown\.$"):
            await authenticator.authenticate(rs(kid="rsa-1"))
    finally:
        await authenticator.aclose()
    assert (before.subject, after.subject) == ("user-1", "user-2")
    assert server.fetches == 2


LATER = int(NOW) + 200_000
"""The expiry of tokens that must outlive the JWKS tests' hours."""


class Clock:
    """The authenticator's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now

    def at(self, seconds_later: float) -> None:
        self.now = NOW + seconds_later


async def test_a_key_removed_from_the_jwks_stops_validating_when_the_keys_pass_max_age() -> None:
    server = JwksServer(
        [rsa_jwk(RSA_KEY, "rsa-1"), ec_jwk(EC_KEY, "ec-1")], cache_control="max-age=120"
    )
    clock = Clock()
    authenticator = Authenticator(jwks_settings(), transport=server.transport, clock=clock)
    try:
        await authenticator.authenticate(rs(kid="rsa-1", exp=LATER))
        server.keys = [ec_jwk(EC_KEY, "ec-1")]  # rsa-1 is withdrawn by the identity provider
        clock.at(119)
        still = await authenticator.authenticate(rs(kid="rsa-1", exp=LATER))
        assert server.fetches == 1
        clock.at(120)
        with pytest.raises(Unauthenticated, match=r"^Token signing key 'kid' is unknown\.$"):
            await authenticator.authenticate(rs(kid="rsa-1", exp=LATER))
        assert server.fetches == 2
        other = await authenticator.authenticate(es(kid="ec-1", sub="user-2", exp=LATER))
    finally:
        await authenticator.aclose()
    assert (still.subject, other.subject) == ("user-1", "user-2")
    assert server.fetches == 2


@pytest.mark.parametrize(
    ("cache_control", "fresh_s"),
    [
        pytest.param(None, 600, id="absent_ten_minutes"),
        pytest.param("public", 600, id="no_max_age_ten_minutes"),
        pytest.param("public, max-age=300", 300, id="max_age"),
        pytest.param('max-age="900", must-revalidate', 900, id="quoted_max_age"),
        pytest.param("max-age=5", 60, id="short_max_age_clamped_to_a_minute"),
        pytest.param("max-age=0", 60, id="zero_clamped_to_a_minute"),
        pytest.param("no-store", 60, id="no_store_a_minute"),
        pytest.param("max-age=99999999999999999999", 86400, id="long_max_age_clamped_to_a_day"),
        pytest.param("max-age=-5", 600, id="negative_ignored"),
        pytest.param("max-age=soon", 600, id="not_a_number_ignored"),
    ],
)
async def test_jwks_keys_are_refreshed_when_older_than_their_bounded_max_age(
    cache_control: str | None, fresh_s: int
) -> None:
    server = JwksServer(PUBLISHED, cache_control=cache_control)
    clock = Clock()
    authenticator = Authenticator(jwks_settings(), transport=server.transport, clock=clock)
    fetches = []
    try:
        for seconds_later in (0, fresh_s - 1, fresh_s, 2 * fresh_s - 1, 2 * fresh_s):
            clock.at(seconds_later)
            await authenticator.authenticate(rs(exp=LATER))
            fetches.append(server.fetches)
    finally:
        await authenticator.aclose()
    assert fetches == [1, 1, 2, 2, 3]


async def test_a_failed_refresh_keeps_the_last_keys_for_an_hour_then_refuses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="hub.auth")
    server = JwksServer(PUBLISHED)
    clock = Clock()
    authenticator = Authenticator(jwks_settings(), transport=server.transport, clock=clock)
    try:
        await authenticator.authenticate(rs(exp=LATER))
        server.status, server.body = 503, b"down"
        answers = []
        for seconds_later in (600, 630, 660, 600 + 3599):
            clock.at(seconds_later)
            answers.append((await authenticator.authenticate(rs(exp=LATER))).subject)
        assert answers == ["user-1"] * 4
        assert server.fetches == 4  # at 600, 660 and 4199: at most once a minute
        clock.at(600 + 3600)
        with pytest.raises(Unauthenticated, match=r"^Token signing keys are unavailable\.$"):
            await authenticator.authenticate(rs(exp=LATER))
        server.status, server.body = 200, None
        clock.at(600 + 3600 + 60)
        back = await authenticator.authenticate(rs(exp=LATER))
    finally:
        await authenticator.aclose()
    assert back.subject == "user-1"
    assert server.fetches == 5
    assert sum("JWKS fetch" in r.getMessage() for r in caplog.records) == 3


def refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.parametrize(
    ("transport", "cause"),
    [
        pytest.param(JwksServer([], status=503, body=b"down").transport, "503", id="server_error"),
        pytest.param(JwksServer([], body=b"<html>").transport, "JSONDecodeError", id="not_json"),
        pytest.param(
            JwksServer([], body=b'{"keys": "none"}').transport, "no 'keys' list", id="no_key_list"
        ),
        pytest.param(
            httpx.MockTransport(refuse_connection), "connection refused", id="unreachable"
        ),
    ],
)
async def test_jwks_failure_is_reported_as_unavailable_and_logged(
    transport: httpx.MockTransport, cause: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hub.auth")
    authenticator = Authenticator(jwks_settings(), transport=transport, clock=lambda: NOW)
    try:
        for _ in range(2):  # the second request, within the minute, does not fetch again
            with pytest.raises(Unauthenticated) as refused:
                await authenticator.authenticate(rs())
            assert refused.value.message == "Token signing keys are unavailable."
    finally:
        await authenticator.aclose()
    failures = [r.getMessage() for r in caplog.records if r.name == "hub.auth"]
    assert len(failures) == 1
    assert JWKS_URL in failures[0]
    assert cause in failures[0]


async def test_jwks_recovers_after_a_failure_once_the_minute_has_passed() -> None:
    server = JwksServer(PUBLISHED, status=500, body=b"oops")
    now = [NOW]
    authenticator = Authenticator(jwks_settings(), transport=server.transport, clock=lambda: now[0])
    try:
        with pytest.raises(Unauthenticated, match=r"^Token signing keys are unavailable\.$"):
            await authenticator.authenticate(rs())
        server.status, server.body = 200, None
        now[0] = NOW + 60
        principal = await authenticator.authenticate(rs())
    finally:
        await authenticator.aclose()
    assert principal.subject == "user-1"
    assert server.fetches == 2


def test_issue_token_refuses_when_only_a_jwks_is_configured() -> None:
    with pytest.raises(ValueError, match="HUB_JWT_SECRET"):
        issue_token(jwks_settings(), subject="user-1", tenant="acme", roles=["admin"])


def test_issue_token_refuses_a_role_the_hub_does_not_know() -> None:
    with pytest.raises(ValueError, match="unknown roles: root"):
        issue_token(dev_settings(), subject="user-1", tenant="acme", roles=["admin", "root"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"sub": "evil\ud800"},
            "Token claim 'sub' is not valid Unicode text.",
            id="sub_surrogate",
        ),
        pytest.param(
            {"sub": "\udfffevil"},
            "Token claim 'sub' is not valid Unicode text.",
            id="sub_low_surrogate",
        ),
        pytest.param(
            {"client_id": "ui\ud83d"},
            "Token claim 'client_id' is not valid Unicode text.",
            id="client_id_surrogate",
        ),
        pytest.param(
            {"tenant": "acme\n"},
            "Token claim 'tenant' contains a control or invisible character.",
            id="tenant_newline",
        ),
        pytest.param(
            {"purpose": "analytics\u202e"},
            "Token claim 'purpose' contains a control or invisible character.",
            id="purpose_bidi_override",
        ),
        pytest.param(
            {"sub": "user\x00"},
            "Token claim 'sub' contains a control or invisible character.",
            id="sub_nul",
        ),
        pytest.param(
            {"campaigns": ["cmp_1", "cmp\ud800"]},
            "Token claim 'campaigns' is not valid Unicode text.",
            id="campaign_surrogate",
        ),
        pytest.param(
            {"campaigns": ["cmp\t1"]},
            "Token claim 'campaigns' contains a control or invisible character.",
            id="campaign_tab",
        ),
        pytest.param(
            {"scope": "metrics:read\u2028campaigns:read"},
            "Token claim 'scope' contains a control or invisible character.",
            id="scope_line_separator",
        ),
        pytest.param(
            {"scope": "metrics:read\ud800"},
            "Token claim 'scope' is not valid Unicode text.",
            id="scope_surrogate",
        ),
        pytest.param(
            {"sub": "u" * 201}, "Token claim 'sub' is longer than 200 characters.", id="sub_201"
        ),
        pytest.param(
            {"client_id": "c" * 201},
            "Token claim 'client_id' is longer than 200 characters.",
            id="client_id_201",
        ),
        pytest.param(
            {"tenant": "t" * 65},
            "Token claim 'tenant' is longer than 64 characters.",
            id="tenant_65",
        ),
        pytest.param(
            {"purpose": "p" * 65},
            "Token claim 'purpose' is longer than 64 characters.",
            id="purpose_65",
        ),
        pytest.param(
            {"campaigns": ["c" * 41]},
            "Token claim 'campaigns' is longer than 40 characters.",
            id="campaign_41",
        ),
        pytest.param(
            {"scope": "s" * 1025},
            "Token claim 'scope' is longer than 1024 characters.",
            id="scope_1025",
        ),
    ],
)
async def test_a_claim_that_is_not_clean_text_of_its_columns_size_is_refused_unechoed(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(Unauthenticated) as refused:
        await authenticate(dev_settings(), hs(**overrides))
    assert refused.value.message == message
    assert refused.value.extensions == {"code": "UNAUTHENTICATED"}


async def test_claims_at_their_columns_size_in_any_script_are_accepted() -> None:
    principal = await authenticate(
        dev_settings(),
        hs(
            sub="ü" * 199 + "😀",
            client_id="c" * 200,
            tenant="t" * 64,
            purpose="Zweck für Analysen",
            campaigns=["c" * 40],
        ),
    )
    assert principal.subject == "ü" * 199 + "😀"
    assert (principal.client_id, principal.tenant) == ("c" * 200, "t" * 64)
    assert principal.purpose == "Zweck für Analysen"
    assert principal.campaigns == frozenset({"c" * 40})


def test_claim_bounds_fit_the_columns_that_store_them() -> None:
    columns = AuditEventRow.__table__.c  # type: ignore[attr-defined]
    assert MAX_CLAIM_CHARS["sub"] <= columns.principal.type.length
    assert MAX_CLAIM_CHARS["client_id"] <= columns.client_id.type.length
    assert MAX_CLAIM_CHARS["tenant"] <= columns.tenant_id.type.length
    assert MAX_CLAIM_CHARS["purpose"] <= columns.purpose.type.length
    assert MAX_CLAIM_CHARS["campaigns"] <= CampaignRow.__table__.c.id.type.length  # type: ignore[attr-defined]
    assert MAX_CLAIM_CHARS["sub"] <= ErasureRow.__table__.c.erased_by.type.length  # type: ignore[attr-defined]


async def test_a_token_whose_sub_has_a_lone_surrogate_is_401_and_not_echoed(
    sqlite_client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token(subject="evil\ud800")
    status, payload = await gql(sqlite_client, "{ me { subject } }", token=token)
    assert status == 401
    assert codes(payload) == ["UNAUTHENTICATED"]
    assert payload["errors"][0]["message"] == "Token claim 'sub' is not valid Unicode text."
    assert "evil" not in json.dumps(payload)


async def test_a_token_checked_once_is_taken_as_checked_for_a_minute_and_no_longer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    authenticator = Authenticator(dev_settings(), clock=clock)
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    token = hs(exp=LATER)
    principals = []
    for seconds in (0, 30, 59.9, 60):
        clock.at(seconds)
        principals.append(await authenticator.authenticate(token))
    assert len(decoded) == 2  # at 0, and again at 60
    assert {p.subject for p in principals} == {"user-1"}


async def test_a_remembered_token_still_expires_and_its_claims_still_count() -> None:
    clock = Clock()
    authenticator = Authenticator(dev_settings(), clock=clock)
    token = hs(exp=int(NOW) + 10)
    await authenticator.authenticate(token)
    clock.at(10 + 30)  # past the expiry and the leeway, within the minute remembered
    with pytest.raises(Unauthenticated, match=r"^Token has expired\.$"):
        await authenticator.authenticate(token)


async def test_new_signing_keys_end_what_was_remembered_of_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = JwksServer([rsa_jwk(RSA_KEY, "rsa-1"), ec_jwk(EC_KEY, "ec-1")])
    clock = Clock()
    authenticator = Authenticator(jwks_settings(), transport=server.transport, clock=clock)
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    try:
        token = rs(kid="rsa-1", exp=LATER)
        await authenticator.authenticate(token)
        await authenticator.authenticate(token)
        assert len(decoded) == 1
        clock.at(61)  # an unknown kid may refresh the keys once a minute
        server.keys = [rsa_jwk(RSA_KEY, "rsa-1"), ec_jwk(EC_KEY, "ec-2")]
        with pytest.raises(Unauthenticated):
            await authenticator.authenticate(es(kid="ec-3", exp=LATER))
        assert server.fetches == 2
        await authenticator.authenticate(token)  # checked again, with the new keys
    finally:
        await authenticator.aclose()
    assert len(decoded) == 2


async def test_a_verified_token_tells_when_it_expires_checked_or_remembered() -> None:
    settings = Settings(jwt_secret="s" * 40)
    token = issue_token(settings, subject="u", tenant="acme", roles=["analyst"], ttl_s=90, now=NOW)
    authenticator = Authenticator(settings, clock=lambda: NOW)
    try:
        first = await authenticator.authenticate_until(f"Bearer {token}")
        again = await authenticator.authenticate_until(f"Bearer {token}")  # remembered
        anonymous = await authenticator.authenticate_until(None)
    finally:
        await authenticator.aclose()
    assert first[1] == again[1] == int(NOW) + 90
    assert first[0].subject == "u" and first[0] == again[0]
    assert anonymous == (ANONYMOUS, None)
