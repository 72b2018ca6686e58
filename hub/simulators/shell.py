"""build_simulator_app: a simulator's routes behind the fault layer, with the control routes."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from hub.simulators.config import SimulatorConfig
from hub.simulators.control import control_routes
from hub.simulators.faults import FaultLayer, FaultState
from hub.simulators.problems import answer_http_exception


def build_simulator_app(config: SimulatorConfig, routes: Sequence[BaseRoute]) -> Starlette:
    """The app's `state.faults` is the live `FaultState` (the control routes change it)."""
    faults = FaultState.from_config(config)
    app = Starlette(
        routes=[*control_routes(faults), *routes],
        middleware=[Middleware(FaultLayer, state=faults)],
        exception_handlers={HTTPException: answer_http_exception},
    )
    app.state.faults = faults
    return app
