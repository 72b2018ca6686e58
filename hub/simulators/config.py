"""SimulatorConfig: how a simulator behaves when it starts (seed, size, latency, faults)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

FaultMode = Literal["none", "down", "slow", "5xx", "429", "malformed", "truncated"]
FAULT_MODES: tuple[FaultMode, ...] = get_args(FaultMode)
DEFAULT_API_KEY = "sim-dev-key"


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorConfig:
    """Start-up behaviour; the fault mode, latency and error rate can change at run time.

    `influencers` and `seed` must match the own store's `SeedPlan` so that ids agree.
    `quota_per_s` is a token bucket per API key (burst of one second's worth).
    """

    seed: int = 7
    influencers: int = 150
    latency_ms: tuple[int, int] = (0, 0)
    error_rate: float = 0.0
    quota_per_s: float | None = None
    api_key: str = DEFAULT_API_KEY
    fault: FaultMode = "none"
    slow_s: float = 5.0
    retry_after_s: int = 1
    crm_listed_per_tenant: int = 100
    """Records the CRM's listing walks per demo tenant (positions 00000 onwards)."""

    def __post_init__(self) -> None:
        low, high = self.latency_ms
        if not 0 <= low <= high:
            raise ValueError(f"latency_ms must be 0 <= min <= max, got {self.latency_ms}")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be within [0, 1], got {self.error_rate}")
        if self.quota_per_s is not None and self.quota_per_s <= 0:
            raise ValueError(f"quota_per_s must be positive, got {self.quota_per_s}")
        if self.fault not in FAULT_MODES:
            raise ValueError(f"fault must be one of {', '.join(FAULT_MODES)}, got {self.fault}")
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if not 0 <= self.crm_listed_per_tenant <= 100_000:
            raise ValueError("crm_listed_per_tenant must be within [0, 100000]")
