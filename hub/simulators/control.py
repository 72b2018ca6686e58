"""The `/_control/` routes of every simulator: switch the fault mode, read call counts and
the last call's trace headers, reset."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hub.simulators.config import FAULT_MODES
from hub.simulators.faults import FaultState
from hub.simulators.params import read_json_object


def control_routes(state: FaultState) -> list[Route]:
    async def stats(request: Request) -> JSONResponse:
        calls = dict(sorted(state.calls.items()))
        return JSONResponse({"calls": calls, "total": sum(calls.values())})

    async def last_request(request: Request) -> JSONResponse:
        return JSONResponse(state.last_request)

    async def fault(request: Request) -> JSONResponse:
        if request.method == "POST":
            change_faults(state, await read_json_object(request))
        return JSONResponse(state.describe())

    async def reset(request: Request) -> JSONResponse:
        state.reset()
        return JSONResponse(state.describe())

    return [
        Route("/_control/stats", stats, methods=["GET"]),
        Route("/_control/last-request", last_request, methods=["GET"]),
        Route("/_control/fault", fault, methods=["GET", "POST"]),
        Route("/_control/reset", reset, methods=["POST"]),
    ]


def change_faults(state: FaultState, body: dict[str, Any]) -> None:
    """Apply `mode`, `latency_ms`, `error_rate`, `slow_s`, `retry_after_s`; all or nothing."""
    unknown = set(body) - {"mode", "latency_ms", "error_rate", "slow_s", "retry_after_s"}
    if unknown:
        raise HTTPException(400, f"unknown fields: {', '.join(sorted(unknown))}")
    mode = body.get("mode", state.mode)
    if mode not in FAULT_MODES:
        raise HTTPException(400, f"mode must be one of {', '.join(FAULT_MODES)}")
    latency = body.get("latency_ms", list(state.latency_ms))
    if not (
        isinstance(latency, list)
        and len(latency) == 2
        and all(_is_number(value) for value in latency)
        and 0 <= latency[0] <= latency[1]
    ):
        raise HTTPException(400, "latency_ms must be [min, max] with 0 <= min <= max")
    error_rate = body.get("error_rate", state.error_rate)
    if not (_is_number(error_rate) and 0 <= error_rate <= 1):
        raise HTTPException(400, "error_rate must be a number within [0, 1]")
    slow_s = body.get("slow_s", state.slow_s)
    if not (_is_number(slow_s) and 0 <= slow_s <= 600):
        raise HTTPException(400, "slow_s must be a number of seconds within [0, 600]")
    retry_after_s = body.get("retry_after_s", state.retry_after_s)
    if not (isinstance(retry_after_s, int) and not isinstance(retry_after_s, bool)):
        raise HTTPException(400, "retry_after_s must be a whole number of seconds")
    if retry_after_s < 0:
        raise HTTPException(400, "retry_after_s must not be negative")
    state.mode = mode
    state.latency_ms = (int(latency[0]), int(latency[1]))
    state.error_rate = float(error_rate)
    state.slow_s = float(slow_s)
    state.retry_after_s = retry_after_s


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
