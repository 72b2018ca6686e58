"""The root types and `build_schema()`."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from hub import metric_history, tenants
from hub.context import Context
from hub.errors import BadUserInput, NotFound
from hub.metric_history import TenantRows
from hub.policy.metrics import Granularity
from hub.resolvers import campaigns as campaign_resolvers
from hub.resolvers import consents as consent_resolvers
from hub.resolvers import contacts as contact_resolvers
from hub.resolvers import influencers as influencer_resolvers
from hub.resolvers import metrics as metric_resolvers
from hub.resolvers import privacy
from hub.schema.access import WholeRefusals
from hub.schema.campaigns import (
    Campaign,
    CampaignMember,
    CampaignStatus,
    CreateCampaignInput,
    UpdateCampaignInput,
    campaign_changes,
)
from hub.schema.contacts import Consent, Contact, ContactInput
from hub.schema.cost import QueryCost
from hub.schema.documents import DocumentCache, Documents
from hub.schema.influencers import Influencer, InfluencerFilter
from hub.schema.metrics import Granularity as GranularityType
from hub.schema.metrics import (
    MetricConnection,
    MetricsFilter,
    kept_metric_connection,
    metric_connection,
)
from hub.schema.money import MoneyInput
from hub.schema.pagination import (
    Connection,
    PageArgs,
    check_first,
    connection,
    decode_number_cursor,
    encode_number_cursor,
)
from hub.schema.privacy import AccessEvent, ErasureReport
from hub.schema.schema import HubSchema
from hub.schema.subscriptions import Subscription
from hub.schema.sync import SyncStatus, sync_status
from hub.schema.viewer import Tenant, TenantStatusType, Viewer
from hub.settings import Settings


@strawberry.type
class Query:
    @strawberry.field(description="The caller, as read from the bearer token.")
    def me(self, info: Info[Context, None]) -> Viewer:
        return Viewer.from_principal(info.context.principal)

    @strawberry.field(description="Where the caller's tenant's contacts stand with the CRM.")
    async def sync_status(self, info: Info[Context, None]) -> SyncStatus | None:
        context = info.context
        return await sync_status(context.store, context.require_scope().tenant)

    @strawberry.field(description="The caller's tenant.")
    async def tenant(self, info: Info[Context, None]) -> Tenant:
        context = info.context
        scope = context.require_scope()
        found = await tenants.find(context.store, scope.tenant)
        if found is None:  # a token's tenant the store does not hold
            raise NotFound("The caller's tenant is not in the store.")
        return Tenant(
            id=strawberry.ID(found.id),
            name=found.name,
            status=TenantStatusType(found.status),
        )

    @strawberry.field
    async def influencer(self, info: Info[Context, None], id: strawberry.ID) -> Influencer | None:
        row = await influencer_resolvers.influencer(info.context, id)
        return None if row is None else Influencer.from_row(row)

    @strawberry.field
    async def influencers(
        self,
        info: Info[Context, None],
        first: int | None = 20,
        after: str | None = None,
        filter: InfluencerFilter | None = None,
    ) -> Connection[Influencer]:
        context = info.context
        page = PageArgs.parse(first, after, kind="influencer", cap=context.settings.page_size_cap)
        given = filter or InfluencerFilter()
        query = influencer_resolvers.influencer_query(
            country=given.country,
            category=given.category,
            handle_prefix=given.handle_prefix,
            platform=given.platform,
        )
        result = await influencer_resolvers.influencers(context, query, page)
        return connection(
            result.rows,
            has_next=result.has_next,
            after=page.after,
            node=Influencer.from_row,
            row_id=lambda row: row.id,
            count=lambda: influencer_resolvers.influencer_count(context, query),
        )

    @strawberry.field
    async def campaign(self, info: Info[Context, None], id: strawberry.ID) -> Campaign | None:
        row = await campaign_resolvers.campaign(info.context, id)
        return None if row is None else Campaign.from_row(row)

    @strawberry.field
    async def campaigns(
        self,
        info: Info[Context, None],
        first: int | None = 20,
        after: str | None = None,
        status: CampaignStatus | None = None,
    ) -> Connection[Campaign]:
        context = info.context
        page = PageArgs.parse(first, after, kind="campaign", cap=context.settings.page_size_cap)
        wanted = None if status is None else status.value
        result = await campaign_resolvers.campaigns(context, wanted, page)
        return connection(
            result.rows,
            has_next=result.has_next,
            after=page.after,
            node=Campaign.from_row,
            row_id=lambda row: row.id,
            count=lambda: campaign_resolvers.campaign_count(context, wanted),
        )

    @strawberry.field
    async def contact(self, info: Info[Context, None], id: strawberry.ID) -> Contact | None:
        row = await contact_resolvers.contact(info.context, id)
        return None if row is None else Contact.from_row(row)

    @strawberry.field(description="Per-account metric rows for BI tools, scoped like campaigns.")
    async def metrics(
        self,
        info: Info[Context, None],
        filter: MetricsFilter,
        granularity: GranularityType | None = Granularity.DAY,  # type: ignore[valid-type]
        first: int | None = 100,
        after: str | None = None,
    ) -> MetricConnection:
        context = info.context
        size = check_first(100 if first is None else first, cap=context.settings.page_size_cap)
        query = metric_resolvers.metrics_query(
            since=filter.from_,
            until=filter.to,
            campaign_id=filter.campaign_id,
            influencer_id=filter.influencer_id,
            platform=filter.platform,
            updated_since=filter.updated_since,
        )
        if query.tenant_wide:
            if granularity not in (None, Granularity.DAY):
                raise BadUserInput(
                    "Without campaignId or influencerId, rows are daily: granularity DAY.",
                    argument="granularity",
                )
            rows = TenantRows(
                context.require_scope(),
                query.since,
                query.until,
                query.updated_since,
                query.platform,
                kept_before=None
                if query.updated_since is None
                else datetime.now(UTC) - metric_history.SETTLE,
            )
            return await kept_metric_connection(context.store, rows, first=size, after=after)
        points = await metric_resolvers.metric_rows(context, query, granularity or Granularity.DAY)
        return metric_connection(points, first=size, after=after)

    @strawberry.field(description="Who read or was refused this person's data (role dpo).")
    async def personal_data_access_log(
        self,
        info: Info[Context, None],
        contact_id: strawberry.ID,
        first: int | None = 50,
        after: str | None = None,
    ) -> Connection[AccessEvent]:
        context = info.context
        size = check_first(50 if first is None else first, cap=context.settings.page_size_cap)
        start = decode_number_cursor(after)
        page = await privacy.access_log(context, contact_id, first=size, after=start)
        return connection(
            page.rows,
            has_next=page.has_next,
            after=after,
            node=AccessEvent.from_row,
            row_id=lambda row: str(row.id),
            cursor=lambda row: encode_number_cursor(row.id or 0),
            count=lambda: privacy.access_log_count(context, contact_id),
        )

    @strawberry.field(description="The person's data, consents and access log as one document.")
    async def export_contact_data(self, info: Info[Context, None], id: strawberry.ID) -> JSON:
        return JSON(await privacy.export_contact(info.context, id))

    @strawberry.field(description="The report of an erasure, as it stands now.")
    async def erasure_report(
        self, info: Info[Context, None], contact_id: strawberry.ID
    ) -> ErasureReport | None:
        row = await privacy.erasure_report(info.context, contact_id)
        return None if row is None else ErasureReport.from_row(row)


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def create_campaign(
        self, info: Info[Context, None], input: CreateCampaignInput
    ) -> Campaign:
        row = await campaign_resolvers.create_campaign(info.context, campaign_changes(input))
        return Campaign.from_row(row)

    @strawberry.mutation
    async def update_campaign(
        self, info: Info[Context, None], id: strawberry.ID, input: UpdateCampaignInput
    ) -> Campaign:
        campaign_resolvers.check_campaign_id(id)
        row = await campaign_resolvers.update_campaign(info.context, id, campaign_changes(input))
        return Campaign.from_row(row)

    @strawberry.mutation
    async def add_campaign_member(
        self,
        info: Info[Context, None],
        campaign_id: strawberry.ID,
        influencer_id: strawberry.ID,
        fee: MoneyInput | None = None,
    ) -> CampaignMember:
        row = await campaign_resolvers.add_member(
            info.context,
            campaign_id,
            influencer_id,
            None if fee is None else (fee.amount, fee.currency),
        )
        return CampaignMember.from_row(row)

    @strawberry.mutation
    async def upsert_contact(self, info: Info[Context, None], input: ContactInput) -> Contact:
        row = await contact_resolvers.upsert_contact(
            info.context,
            contact_resolvers.ContactFields(
                id=input.id,
                influencer_id=input.influencer_id,
                crm_id=input.crm_id,
                role=input.role,
                company=input.company,
                full_name=input.full_name,
                email=input.email,
                phone=input.phone,
            ),
        )
        return Contact.from_row(row)

    @strawberry.mutation(description="Record a consent; history is kept, never overwritten.")
    async def grant_consent(
        self,
        info: Info[Context, None],
        contact_id: strawberry.ID,
        purpose: str,
        source: str,
        evidence: str | None = None,
    ) -> Consent:
        row = await consent_resolvers.grant_consent(
            info.context, contact_id, purpose, source, evidence
        )
        return Consent.from_row(row, now=row.recorded_at)

    @strawberry.mutation(description="Withdraw a consent; effective for the very next request.")
    async def withdraw_consent(
        self, info: Info[Context, None], contact_id: strawberry.ID, purpose: str
    ) -> Consent:
        row = await consent_resolvers.withdraw_consent(info.context, contact_id, purpose)
        return Consent.from_row(row, now=row.recorded_at)

    @strawberry.mutation(description="Erase a person everywhere (role dpo); see erasureReport.")
    async def erase_contact(self, info: Info[Context, None], id: strawberry.ID) -> ErasureReport:
        row = await privacy.erase_contact(info.context, id)
        return ErasureReport.from_row(row)


def build_schema(settings: Settings) -> HubSchema:
    """The hub's schema with its extensions, configured from `settings`."""
    return HubSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        federation_version="2.5",
        # Nested in this order: parsing first; after validation, whole refusals before cost.
        extensions=[Documents, QueryCost, WholeRefusals],
        documents=DocumentCache(max_entries=settings.document_cache_size),
    )
