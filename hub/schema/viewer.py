"""`Viewer`: who the caller is, as the hub understood the token."""

from __future__ import annotations

from enum import Enum

import strawberry

from hub.auth import Principal


@strawberry.type(description="The caller, as read from the bearer token.")
class Viewer:
    subject: str | None
    tenant: str | None
    roles: list[str]
    scopes: list[str]
    campaigns: list[strawberry.ID] | None
    purpose: str | None
    client_id: str
    anonymous: bool

    @classmethod
    def from_principal(cls, principal: Principal) -> Viewer:
        return cls(
            subject=principal.subject,
            tenant=principal.tenant,
            roles=sorted(principal.roles),
            scopes=sorted(principal.scopes or ()),
            campaigns=None
            if principal.campaigns is None
            else [strawberry.ID(c) for c in sorted(principal.campaigns)],
            purpose=principal.purpose,
            client_id=principal.client_id,
            anonymous=principal.is_anonymous,
        )


class TenantStatus(Enum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


TenantStatusType = strawberry.enum(
    TenantStatus,
    name="TenantStatus",
    description="A suspended tenant's tokens are refused on every path.",
)


@strawberry.type(description="The caller's tenant: whose rows it sees.")
class Tenant:
    id: strawberry.ID
    name: str
    status: TenantStatusType  # type: ignore[valid-type]
