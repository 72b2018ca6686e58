"""Logs: every line through structlog, as JSON (one object a line) or for a console.

The hub's modules keep calling `logging.getLogger(...)`; structlog's `ProcessorFormatter`
renders their records, uvicorn's and any library's alike. A `RequestLog` in a context
variable follows each HTTP request: every line logged while it runs carries its
`request_id`, and a GraphQL request ends with one line saying what it was and cost.

What a line may hold: ids, names of operations and sources, codes, numbers. Never a
personal value (a contact's name, email or phone) and never a token or a secret: the
request line is built from fields chosen here, and uvicorn's access line leaves out the
query string (a GET request's variables travel in it).
"""

from __future__ import annotations

import hashlib
import logging
import logging.config
import sys
import time
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from hub.settings import LogFormat

REQUEST_LINE = "graphql request"
REQUEST_FIELDS = (
    "request_id",
    "operation",
    "client_id",
    "tenant",
    "status",
    "duration_ms",
    "cost",
    "sources",
    "codes",
)
MAX_OPERATION_CHARS = 100
"""An operation name is the client's text: longer ones are cut in the log."""
MAX_CODES = 20
QUIET_LOGGERS = {"httpx": "WARNING", "httpcore": "WARNING"}
"""One INFO line per upstream call would outnumber the request lines; a request line's
`sources` says which sources it called."""

request_logger = logging.getLogger("hub.requests")


@dataclass(slots=True)
class RequestLog:
    """What the log says of one HTTP request; filled in while the request runs."""

    request_id: str
    started_s: float = field(default_factory=time.perf_counter)
    graphql: bool = False
    """Only GraphQL requests end with a request line."""
    operation: str = "anonymous"
    named: bool = False
    """Whether the operation's name comes from the parsed document."""
    client_id: str | None = None
    tenant: str | None = None
    status: int | None = None
    cost: int | float | None = None
    """The actual cost charged, once the answer says it."""
    sources: set[str] = field(default_factory=set)
    codes: list[str] = field(default_factory=list)

    def note_caller(self, client_id: str, subject: str | None, tenant: str | None) -> None:
        """The caller's client and tenant. A token without a `client_id` claim is its own
        client (its `sub`), and a subject may be a person's address: it is logged as a
        pseudonym (a hash), which still tells one caller's lines from another's."""
        self.tenant = tenant
        if subject is not None and client_id == subject:
            digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()
            client_id = f"sub:{digest[:16]}"
        self.client_id = client_id

    def name_operation(self, name: str | None) -> None:
        """The name of the operation the parsed document runs (None: it has none)."""
        self.named = True
        if name:
            self.operation = name[:MAX_OPERATION_CHARS]

    def operation_of(self, params: Any) -> str | None:
        """The operation's name for metrics: the parsed document's once known, else the
        `operationName` the request asked for."""
        if self.named:
            return None if self.operation == "anonymous" else self.operation
        return getattr(params, "operation_name", None)

    def note_code(self, code: object) -> None:
        if isinstance(code, str) and code not in self.codes and len(self.codes) < MAX_CODES:
            self.codes.append(code)

    def note_answer(self, body: dict[str, Any]) -> None:
        """The error codes and the actual cost of an answer about to be sent."""
        for error in body.get("errors") or ():
            extensions = error.get("extensions") if isinstance(error, dict) else None
            if isinstance(extensions, dict):
                self.note_code(extensions.get("code"))
        cost = (body.get("extensions") or {}).get("cost")
        if isinstance(cost, dict):
            actual = cost.get("actualQueryCost")
            if isinstance(actual, int | float) and not isinstance(actual, bool):
                # An export's pages each answer: the line gives what they cost together.
                self.cost = actual if self.cost is None else self.cost + actual

    def fields(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "operation": self.operation,
            "client_id": self.client_id,
            "tenant": self.tenant,
            "status": self.status,
            "duration_ms": round((time.perf_counter() - self.started_s) * 1000, 1),
            "cost": self.cost,
            "sources": sorted(self.sources),
            "codes": list(self.codes),
        }


_current: ContextVar[RequestLog | None] = ContextVar("hub_request_log", default=None)


def start_request(record: RequestLog) -> Token[RequestLog | None]:
    """Make `record` the current request's, for this task and the tasks it starts."""
    return _current.set(record)


def end_request(token: Token[RequestLog | None]) -> None:
    _current.reset(token)


def current_request() -> RequestLog | None:
    return _current.get()


def note_source(name: str) -> None:
    """The current request (if any) called the upstream source `name`."""
    record = _current.get()
    if record is not None:
        record.sources.add(name)


def log_request(record: RequestLog) -> None:
    """The request line: one per GraphQL request, once it is answered."""
    request_logger.info(REQUEST_LINE, extra=record.fields())


# -- rendering ----------------------------------------------------------------------------


def add_request_id(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    record = _current.get()
    if record is not None:
        event_dict.setdefault("request_id", record.request_id)
    return event_dict


def uvicorn_access_fields(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """uvicorn's access line as fields, the path without its query string. A record's
    arguments are read here only: no other line shows them apart from its message."""
    args = event_dict.pop("positional_args", None)
    record: logging.LogRecord | None = event_dict.get("_record")
    if record is None or record.name != "uvicorn.access":
        return event_dict
    event_dict["event"] = "http request"
    if isinstance(args, tuple) and len(args) == 5:
        client, method, full_path, http_version, status = args
        event_dict.update(
            client=client,
            method=method,
            path=str(full_path).split("?", 1)[0],
            http_version=http_version,
            status=status,
        )
    return event_dict


def _json_dumps(value: Any, **kwargs: Any) -> str:
    return orjson.dumps(value, default=kwargs.get("default", str)).decode()


def _pre_chain(log_format: LogFormat) -> list[Processor]:
    processors: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_request_id,
    ]
    if log_format == "json":
        processors.append(structlog.processors.format_exc_info)
    return processors


def formatter(log_format: LogFormat = "json") -> structlog.stdlib.ProcessorFormatter:
    """The formatter of every handler: stdlib records (the hub's, uvicorn's, libraries')
    and structlog's own, rendered alike."""
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_json_dumps)
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    foreign: list[Processor] = [
        structlog.stdlib.ExtraAdder(allow=REQUEST_FIELDS),
        uvicorn_access_fields,
        *_pre_chain(log_format),
    ]
    return structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=foreign,
        pass_foreign_args=True,
    )


def log_config(log_format: LogFormat, *, level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` dictionary: one handler on stderr with `formatter`,
    uvicorn's loggers into it. Plain data (uvicorn hands it to each worker process)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"hub": {"()": f"{__name__}.formatter", "log_format": log_format}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "hub",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
            **{name: {"level": value} for name, value in QUIET_LOGGERS.items()},
        },
        "root": {"handlers": ["stderr"], "level": level},
    }


def configure_logging(log_format: LogFormat) -> None:
    """Logging for this process: stdlib's through `log_config`, structlog's own loggers
    into the same handler."""
    logging.config.dictConfig(log_config(log_format))
    configure_structlog(log_format)


def configure_structlog(log_format: LogFormat) -> None:
    """`structlog.get_logger()` loggers hand their events to the stdlib handlers."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_pre_chain(log_format),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
