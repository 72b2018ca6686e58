"""Simulators of the CRM, social metrics API and discovery service; API.md documents them."""

from hub.simulators.config import FAULT_MODES, FaultMode, SimulatorConfig
from hub.simulators.crm import create_crm_app
from hub.simulators.discovery import create_discovery_app
from hub.simulators.serving import SIMULATOR_NAMES, RunningSimulators, start_simulators
from hub.simulators.social import create_social_app
from hub.simulators.transport import (
    InProcessSimulators,
    InProcessTransport,
    build_in_process_simulators,
)

__all__ = [
    "FAULT_MODES",
    "SIMULATOR_NAMES",
    "FaultMode",
    "InProcessSimulators",
    "InProcessTransport",
    "RunningSimulators",
    "SimulatorConfig",
    "build_in_process_simulators",
    "create_crm_app",
    "create_discovery_app",
    "create_social_app",
    "start_simulators",
]
