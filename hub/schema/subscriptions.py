"""The `Subscription` root: metrics as they are kept, over WebSocket (`hub.graphql_ws`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from hub.context import Context
from hub.errors import BadRequest
from hub.realtime import Subscriber
from hub.resolvers import metrics as metric_resolvers
from hub.schema.metrics import MetricPoint

MEMBERS_REFRESH_S = 30.0
"""How often a subscription reads its campaign's members and their accounts again: a member
added since is followed from then on, one removed no longer, a campaign gone ends it."""


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Each day of metrics kept (webhook or ingestion) for an account of a "
        "member of the campaign, as it is kept; over graphql-transport-ws."
    )
    async def metrics_updated(
        self, info: Info[Context, None], campaign_id: strawberry.ID
    ) -> AsyncGenerator[MetricPoint, None]:
        # Checked before the stream is handed out: a refusal is the subscription's one
        # `error`, not an event.
        context = info.context
        subscriber = context.subscriber
        if subscriber is None:
            raise BadRequest("Subscriptions are served over WebSocket (graphql-transport-ws).")
        followed = await metric_resolvers.followed_accounts(context, campaign_id)
        await subscriber.feed.ready()  # days kept on other replicas from now on are heard
        return _points(context, subscriber, campaign_id, followed)


async def _points(
    context: Context,
    subscriber: Subscriber,
    campaign_id: str,
    followed: metric_resolvers.FollowedAccounts,
) -> AsyncGenerator[MetricPoint, None]:
    listener = subscriber.listen(followed.accounts)
    try:
        while True:
            try:
                async with asyncio.timeout(MEMBERS_REFRESH_S):
                    record = await listener.next()
            except TimeoutError:
                context.forget_loaded()
                followed = await metric_resolvers.followed_accounts(context, campaign_id)
                listener.follow(followed.accounts)
                continue
            point = followed.point(record)
            if point is not None:
                yield MetricPoint.from_point(point)
    finally:
        listener.close()
