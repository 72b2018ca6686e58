"""GraphQL over WebSocket, the `graphql-transport-ws` protocol: subscriptions on `/graphql`.

    accept ──▶ connection_init {Authorization} within HUB_WS_INIT_TIMEOUT_S (else 4408)
           ──▶ the token checked as over HTTP (bad: 4403) ──▶ connection_ack
           ──▶ subscribe {id, payload} ──▶ next … ──▶ complete    (or one `error`)
    the token's `exp` ──▶ 4403          a subscriber too slow for its queue ──▶ 1013
    its tenant suspended or deleted ──▶ 4403 at its next event

Each operation runs through the schema as a query does (document cache, limits, cost,
authorization, row scope, consent per event). Close codes are the protocol's: 4400 a bad
message, 4401 subscribe before the ack, 4403 forbidden, 4406 without the subprotocol, 4408
no init in time, 4409 an id in use, 4429 a second init; 1009 a message over
HUB_WS_MAX_MESSAGE_BYTES.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, OperationType
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from hub.auth import Principal
from hub.context import Context
from hub.errors import BadRequest, HubError, TenantClosed, TenantSuspended, Unauthenticated
from hub.persisted import resolve_query
from hub.realtime import Subscriber
from hub.schema.errors import coded

if TYPE_CHECKING:
    from hub.app import Hub

logger = logging.getLogger("hub.graphql_ws")

PROTOCOL = "graphql-transport-ws"
MAX_ID_CHARS = 128
CLOSE_TIMEOUT_S = 1.0
"""How long a close waits for a client that does not read; then the connection is cut."""
MAX_REASON_BYTES = 123  # what a close frame holds

MakeContext = Callable[[Principal, str, Subscriber], Context]


class Close(Exception):
    """End the connection with this code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Operation:
    """A `subscribe` message's payload, checked."""

    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None

    @classmethod
    def parse(cls, payload: Any) -> Operation:
        if not isinstance(payload, dict):
            raise Close(4400, "Invalid message received: subscribe needs a payload object")
        query, variables = payload.get("query"), payload.get("variables")
        name, extensions = payload.get("operationName"), payload.get("extensions")
        if not (
            (query is None or isinstance(query, str))
            and (variables is None or isinstance(variables, dict))
            and (name is None or isinstance(name, str))
            and (extensions is None or isinstance(extensions, dict))
        ):
            raise Close(4400, "Invalid message received: a payload field has the wrong type")
        return cls(query, variables, name, extensions)


async def serve(hub: Hub, websocket: WebSocket, make_context: MakeContext) -> None:
    """One WebSocket connection on `/graphql`, until either side ends it."""
    await Connection(hub, websocket, make_context).run()


class Connection:
    def __init__(self, hub: Hub, websocket: WebSocket, make_context: MakeContext) -> None:
        self.hub = hub
        self.settings = hub.settings
        self.websocket = websocket
        self.make_context = make_context
        self.principal: Principal | None = None
        self.initialised = False
        self.operations: dict[str, asyncio.Task[None]] = {}
        self._closing: asyncio.Future[Close] = asyncio.get_running_loop().create_future()
        self._timers: list[asyncio.TimerHandle] = []
        self._sending = asyncio.Lock()

    def close(self, code: int, reason: str) -> None:
        """End the connection (once: the first reason wins)."""
        if not self._closing.done():
            self._closing.set_result(Close(code, reason))

    async def run(self) -> None:
        websocket = self.websocket
        if PROTOCOL not in websocket.scope.get("subprotocols", ()):
            await websocket.accept()
            await websocket.close(4406, "Subprotocol not acceptable")
            return
        await websocket.accept(subprotocol=PROTOCOL)
        timeout_s = self.settings.ws_init_timeout_s
        self._timers.append(
            asyncio.get_running_loop().call_later(
                timeout_s, self.close, 4408, "Connection initialisation timeout"
            )
        )
        reader = asyncio.create_task(self._read())
        try:
            waited: set[asyncio.Future[Any]] = {reader, self._closing}
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for timer in self._timers:
                timer.cancel()
            tasks = [reader, *self.operations.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._closing.done():
            ending = self._closing.result()
            # A client that reads nothing would hold the close (and this task) forever.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await websocket.close(ending.code, _reason(ending.reason))

    async def _read(self) -> None:
        limit = self.settings.ws_max_message_bytes
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is None:
                    raise Close(4400, "Invalid message received: messages are JSON text")
                if len(text) > limit or len(text.encode("utf-8", "surrogatepass")) > limit:
                    raise Close(1009, f"A message may hold at most {limit} bytes")
                await self._handle(_decode(text))
        except Close as ending:
            self.close(ending.code, ending.reason)
        except WebSocketDisconnect:
            return

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "connection_init":
            await self._init(message.get("payload"))
        elif kind == "ping":
            pong: dict[str, Any] = {"type": "pong"}
            if isinstance(message.get("payload"), dict):
                pong["payload"] = message["payload"]
            await self._send(pong)
        elif kind == "pong":
            return
        elif kind == "subscribe":
            await self._subscribe(message)
        elif kind == "complete":
            task = self.operations.pop(_id_of(message), None)
            if task is not None:
                task.cancel()
        else:
            raise Close(4400, "Invalid message received: unknown type")

    async def _init(self, payload: Any) -> None:
        if self.initialised:
            raise Close(4429, "Too many initialisation requests")
        self.initialised = True
        if payload is not None and not isinstance(payload, dict):
            raise Close(4400, "Invalid message received: connection_init payload is not an object")
        authorization = (payload or {}).get("Authorization", (payload or {}).get("authorization"))
        if authorization is not None and not isinstance(authorization, str):
            raise Close(4403, "Forbidden: Authorization must be 'Bearer <token>'.")
        try:
            principal, expires_at = await self.hub.authenticator.authenticate_until(authorization)
        except (Unauthenticated, TenantSuspended, TenantClosed) as refusal:
            raise Close(4403, f"Forbidden: {refusal.message}") from None
        self.principal = principal
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if expires_at is not None:
            delay = max(0.0, expires_at - time.time())
            self._timers.append(
                asyncio.get_running_loop().call_later(
                    delay, self.close, 4403, "Forbidden: Token has expired."
                )
            )
        await self._send({"type": "connection_ack"})

    async def _subscribe(self, message: dict[str, Any]) -> None:
        if self.principal is None:
            raise Close(4401, "Unauthorized")
        op_id = _id_of(message)
        if op_id in self.operations:
            raise Close(4409, f"Subscriber for {op_id} already exists")
        operation = Operation.parse(message.get("payload"))
        most = self.settings.ws_max_subscriptions
        if len(self.operations) >= most:
            refusal = BadRequest(f"A connection holds at most {most} subscriptions.")
            error = {"message": refusal.message, "extensions": refusal.extensions}
            await self._send({"id": op_id, "type": "error", "payload": [error]})
            return
        task = asyncio.create_task(self._operate(op_id, operation, self.principal))
        self.operations[op_id] = task

    async def _operate(self, op_id: str, operation: Operation, principal: Principal) -> None:
        try:
            async for kind, payload in self._results(operation, principal):
                await self._send({"id": op_id, "type": kind, "payload": payload})
                if kind == "error":
                    return
            await self._send({"id": op_id, "type": "complete"})
        except Exception:
            logger.exception("subscription %s ended unexpectedly", _printable(op_id))
            unexpected = HubError()
            error = {"message": unexpected.message, "extensions": unexpected.extensions}
            with contextlib.suppress(Exception):
                await self._send({"id": op_id, "type": "error", "payload": [error]})
        finally:
            if self.operations.get(op_id) is asyncio.current_task():
                del self.operations[op_id]

    async def _results(
        self, operation: Operation, principal: Principal
    ) -> AsyncIterator[tuple[str, Any]]:
        """(`next`, result) per event; or one (`error`, errors) when it cannot start."""
        try:
            stream = await self._start(operation, principal)
        except HubError as refusal:
            error = GraphQLError(
                refusal.message, original_error=refusal, extensions=refusal.extensions
            )
            yield "error", [coded(error, before_execution=True).formatted]
            return
        tenants = self.hub.authenticator.tenants
        async with contextlib.aclosing(stream):
            async for result in stream:
                if tenants is not None and not principal.is_anonymous:
                    # Suspended meanwhile: nothing more is delivered, and the connection ends
                    # as one refused at its start does.
                    try:
                        await tenants.check(principal.tenant)
                    except (TenantSuspended, TenantClosed) as refusal:
                        self.close(4403, f"Forbidden: {refusal.message}")
                        return
                if isinstance(result, PreExecutionError):
                    yield "error", [dict(error.formatted) for error in result.errors or ()]
                    return
                yield "next", _answer(result)

    async def _start(
        self, operation: Operation, principal: Principal
    ) -> AsyncGenerator[ExecutionResult, None]:
        hub = self.hub
        tier = hub.policies.cost.tier_for(principal.client_id)
        query = await resolve_query(
            operation.query,
            operation.extensions,
            store=hub.queries,
            manifest=hub.manifest,
            trusted_only=tier.trusted_documents_only,
        )
        if not query:
            raise BadRequest("`query` is missing.")
        subscriber = Subscriber(
            hub.feed,
            max_queued=self.settings.ws_queue_size,
            on_overflow=lambda: self.close(1013, "Try again later: the subscriber fell behind"),
        )
        context = self.make_context(principal, uuid.uuid4().hex, subscriber)
        limits = hub.policies.cost.limits_for(principal.roles)
        context.document = document = hub.schema.documents.prepare(
            query, max_tokens=limits.max_tokens
        )
        found = None if document is None else document.operation(operation.operation_name)
        if found is not None and found.operation is not OperationType.SUBSCRIPTION:
            raise BadRequest(
                "Only subscriptions are served over WebSocket; send queries and mutations "
                "over HTTP."
            )
        return await hub.schema.subscribe(
            query,
            variable_values=operation.variables,
            context_value=context,
            operation_name=operation.operation_name,
        )

    async def _send(self, message: dict[str, Any]) -> None:
        text = json.dumps(message, separators=(",", ":"), default=str)
        async with self._sending:
            await self.websocket.send_text(text)


def _decode(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except ValueError:
        raise Close(4400, "Invalid message received: not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise Close(4400, "Invalid message received: no type")
    return message


def _id_of(message: dict[str, Any]) -> str:
    op_id = message.get("id")
    if not isinstance(op_id, str) or not 0 < len(op_id) <= MAX_ID_CHARS:
        raise Close(4400, f"Invalid message received: id must be 1 to {MAX_ID_CHARS} characters")
    return op_id


def _answer(result: ExecutionResult) -> dict[str, Any]:
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [dict(error.formatted) for error in result.errors]
    if result.extensions:
        body["extensions"] = result.extensions
    return body


def _reason(text: str) -> str:
    """The reason as a close frame holds it: at most 123 bytes of UTF-8."""
    encoded = text.encode("utf-8", "replace")[:MAX_REASON_BYTES]
    return encoded.decode("utf-8", "ignore")


def _printable(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii")[:MAX_ID_CHARS]
