"""The discovery simulator: a GraphQL service with influencer profiles and audience shares."""

from __future__ import annotations

import json
from functools import lru_cache, partial
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLObjectType,
    build_schema,
    execute,
    parse,
    validate,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hub.simulators.config import SimulatorConfig
from hub.simulators.determinism import seeded_random, split_shares
from hub.simulators.roster import RosterInfluencer, build_roster
from hub.simulators.shell import build_simulator_app
from hub.store.seed import CATEGORIES, COUNTRIES

MAX_IDS = 100
RECORDS_KEPT = 100_000
SDL = """
type Query {
  "One entry per id, in order; null where the id is unknown. At most 100 ids."
  profiles(ids: [ID!]!): [Profile]
}
type Profile {
  influencerId: ID!
  handle: String!
  bio: String!
  language: String!
  engagementRate: Float!
  audience: Audience!
}
type Audience {
  countries: [CountryShare!]!
  ageBands: [AgeBandShare!]!
  genderSplit: GenderSplit!
  interests: [String!]!
}
type CountryShare { code: String! share: Float! }
type AgeBandShare { band: String! share: Float! }
type GenderSplit { female: Float! male: Float! other: Float! }
"""
AGE_BANDS = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")
LANGUAGES = {"GB": "en", "US": "en", "SE": "sv", "BR": "pt"}


def profile_record(seed: int, influencer: RosterInfluencer) -> dict[str, Any]:
    """The profile of one influencer; its main audience country is the influencer's own."""
    rng = seeded_random(seed, "discovery-profile", influencer.id)
    others = rng.sample([code for code in COUNTRIES if code != influencer.country], 3)
    country_shares = split_shares(rng, 4)
    age_shares = split_shares(rng, len(AGE_BANDS))
    rng.shuffle(age_shares)
    female = rng.randrange(2_000, 8_000)
    other = rng.randrange(50, 400)
    extra = [c for c in CATEGORIES if c not in influencer.categories]
    topics = ", ".join(category.title() for category in influencer.categories)
    return {
        "influencerId": influencer.id,
        "handle": influencer.handle,
        "bio": f"{topics} creator based in {influencer.country}.",
        "language": LANGUAGES.get(influencer.country, influencer.country.lower()),
        "engagementRate": round(rng.uniform(0.005, 0.09), 4),
        "audience": {
            "countries": [
                {"code": code, "share": share}
                for code, share in zip([influencer.country, *others], country_shares, strict=True)
            ],
            "ageBands": [
                {"band": band, "share": share}
                for band, share in zip(AGE_BANDS, age_shares, strict=True)
            ],
            "genderSplit": {
                "female": female / 10_000,
                "male": (10_000 - female - other) / 10_000,
                "other": other / 10_000,
            },
            "interests": [*influencer.categories, *rng.sample(extra, 2)],
        },
    }


def create_discovery_app(config: SimulatorConfig) -> Starlette:
    roster = build_roster(config.seed, config.influencers)
    schema = build_schema(SDL)
    profile_of = lru_cache(maxsize=RECORDS_KEPT)(partial(profile_record, config.seed))

    def resolve_profiles(
        _root: object, _info: object, ids: list[str]
    ) -> list[dict[str, Any] | None]:
        if len(ids) > MAX_IDS:
            raise GraphQLError(f"profiles takes at most {MAX_IDS} ids; got {len(ids)}")
        return [
            profile_of(roster.influencers[influencer_id])
            if influencer_id in roster.influencers
            else None
            for influencer_id in ids
        ]

    query_type = schema.query_type
    assert isinstance(query_type, GraphQLObjectType)
    query_type.fields["profiles"].resolve = resolve_profiles

    @lru_cache(maxsize=256)
    def checked(query: str) -> DocumentNode | ExecutionResult:
        """The parsed and validated document of a query text, or the errors that refuse it."""
        try:
            document = parse(query)
        except GraphQLError as error:
            return ExecutionResult(None, [error])
        errors = validate(schema, document)
        return ExecutionResult(None, errors) if errors else document

    async def endpoint(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _request_error("body must be JSON")
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _request_error("body must be an object with a `query` string")
        variables = body.get("variables")
        operation = body.get("operationName")
        if not isinstance(variables, dict | None) or not isinstance(operation, str | None):
            return _request_error("variables must be an object, operationName a string")
        document = checked(body["query"])
        if isinstance(document, ExecutionResult):
            return JSONResponse(document.formatted, status_code=400)
        result = execute(schema, document, variable_values=variables, operation_name=operation)
        assert isinstance(result, ExecutionResult)  # the resolvers are synchronous
        return JSONResponse(result.formatted, status_code=200 if result.data is not None else 400)

    return build_simulator_app(config, [Route("/graphql", endpoint, methods=["POST"])])


def _request_error(message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message}]}, status_code=400)
