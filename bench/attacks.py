"""How long the hub takes to refuse attack documents before execution (prints figures)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from graphql import parse

from hub.errors import HubError
from hub.policies import load_for_schema
from hub.policy.cost import estimate_cost
from hub.policy.limits import check_limits, check_tokens
from hub.schema.root import build_schema
from hub.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _nest(depth: int) -> str:
    body = "id"
    for _ in range(depth):
        body = f"me {{ subject }} influencers(first: 1) {{ edges {{ node {{ {body} }} }} }}"
    return "{ " + body + " }"


def attacks() -> dict[str, str]:
    of_type = "name"
    for _ in range(50):
        of_type = f"name ofType {{ {of_type} }}"
    bomb = (
        "{ ...F0 } "
        + " ".join(f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(30))
        + " fragment F30 on Query { __typename }"
    )
    first = (
        "{ influencers(first: 100) { edges { node { campaigns(first: 100) { edges { node {"
        " members(first: 100) { edges { node { influencer { campaigns(first: 100) {"
        " totalCount } } } } } } } } } } } }"
    )
    return {
        "1,000 aliases of a list field": "{ "
        + " ".join(f"a{n}: influencers {{ edges {{ node {{ id }} }} }}" for n in range(1000))
        + " }",
        "depth 50": _nest(50),
        "fragment cycle": "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
        "10,000 tokens": "{ me { " + "subject " * 10_000 + "} }",
        "first: 100 nested four times": first,
        "introspection, ofType x 50": "{ __schema { types { " + of_type + " } } }",
        "300 root fields": "{ " + " ".join(f"a{n}: me {{ subject }}" for n in range(300)) + " }",
        "fragment bomb (2^30 spreads)": bomb,
    }


def main(rounds: int = 20) -> None:
    schema = build_schema(Settings())
    policy = load_for_schema(ROOT / "policies", schema).cost
    limits = policy.limits
    print(f"{'attack':<32} {'refused as':<30} {'hub ms (p50)':>12}")
    for name, query in attacks().items():
        samples, verdict = [], "admitted"
        for _ in range(rounds):
            started = time.perf_counter()
            parse_s = 0.0
            try:
                check_tokens(query, limits)
                parse_started = time.perf_counter()
                document = parse(query)
                parse_s = time.perf_counter() - parse_started
                check_limits(document, limits, operation_name=None)
                total = estimate_cost(
                    schema._schema, document, operation_name=None, variables=None, policy=policy
                ).total
                if total > policy.tier_for(None).max_query_cost:
                    verdict = f"COST {total:,}"
            except HubError as error:
                verdict = (
                    f"{error.code} {error.details.get('actual', '')}/"
                    f"{error.details.get('limit', '')}"
                )
            # graphql-core's own parse is left out: the token limit bounds what it reads.
            samples.append((time.perf_counter() - started - parse_s) * 1000)
        print(f"{name:<32} {verdict:<30} {statistics.median(samples):>12.2f}")


if __name__ == "__main__":
    main()
