"""The planned executor: queries planned once and executed in batches.

    document, operation, @skip/@include values, caller's denied fields
        │  plan.py (once; kept with the parsed document)
        ▼
    Plan: a tree of steps ── typename · attribute · resolver · batch resolver · denied
        │  run.py (per request; arguments coerced once per step)
        ▼
    level 1: each field for every parent at once ──▶ level 2 ──▶ …  ──▶ the answer, built
                                                                       in place, nulls
                                                                       propagated as
                                                                       graphql-core does
    fallback.py: what a plan cannot hold (mutations, introspection, @defer) runs on
    graphql-core as a whole operation, counted in `hub_engine_fallbacks_total{reason}`.

Enforcement stays where it is decided today: denied fields are refused by the step (the
same refusal as `hub.schema.access.DenyFields`), consent by the personal-data rule of each
field, row scope in the store queries, cost by the schema extension around execution.
"""
