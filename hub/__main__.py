"""The `hub` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from hub.errors import SourceError
from hub.observability.logs import configure_logging, configure_structlog, log_config
from hub.observability.tracing import setup_tracing
from hub.settings import Settings, SettingsError, check_serving_secrets, load_settings

if TYPE_CHECKING:
    from hub.policies import Policies
    from hub.sources.cache import Cache


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve" and args.demo:
            os.environ["HUB_DEMO"] = "true"
        settings = load_settings()
        configure_logging(settings.logs_as)
        return int(args.run(settings, args) or 0)
    except SettingsError as exc:
        print(f"hub: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"hub: {exc}", file=sys.stderr)
        return 1


MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


class CommandError(Exception):
    """A command cannot do what was asked; the message is the one line the user sees."""


def app_from_environment() -> Starlette:
    """The uvicorn factory: settings from the environment, then `create_app`."""
    from hub.app import create_app

    settings = load_settings()
    configure_structlog(settings.logs_as)  # in each worker; uvicorn sets up stdlib logging
    return create_app(settings)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    check_serving_secrets(settings)
    _checked_policies(settings)
    setup_tracing()  # a bad OTEL_TRACES_EXPORTER stops start-up here, with one line
    if args.workers > 1 and settings.cache_url == "memory://":
        # Each worker would keep its own cost budgets, upstream rate limits and kept answers:
        # N workers would admit N budgets, send N quotas, and serve a withdrawn consent
        # from the answers another worker kept.
        raise CommandError(
            f"--workers {args.workers} on the in-process cache would give each worker its own "
            "budgets, rate limits and kept answers: set HUB_CACHE_URL=redis://… or use one worker"
        )
    if settings.demo:
        # The demo's social simulator sends its webhooks here (see `hub.simulators.deliveries`).
        os.environ.setdefault(
            "HUB_DEMO_WEBHOOK_URL", f"http://{args.host}:{args.port}/webhooks/social"
        )
        _print_demo_banner(settings, args.host, args.port)
    with _metrics_shared_by(args.workers):
        uvicorn.run(
            "hub.__main__:app_from_environment",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_config=log_config(settings.logs_as),
            log_level="info",
            access_log=settings.access_log,
            # A WebSocket frame over the limit is refused before it is buffered whole.
            ws_max_size=settings.ws_max_message_bytes,
        )
    return 0


@contextlib.contextmanager
def _metrics_shared_by(workers: int) -> Iterator[None]:
    """With several workers, prometheus_client's multiprocess mode: each worker (a new
    interpreter, which reads the variable when it imports the library) keeps its values in
    files in a directory of this run, and `/metrics` on any worker adds them all up. The
    directory goes when the server stops. One that `PROMETHEUS_MULTIPROC_DIR` names already
    is used as it is (the deployment empties it between runs)."""
    if workers <= 1 or os.environ.get(MULTIPROC_DIR):
        yield
        return
    directory = tempfile.mkdtemp(prefix="hub-metrics-")
    os.environ[MULTIPROC_DIR] = directory
    try:
        yield
    finally:
        del os.environ[MULTIPROC_DIR]
        shutil.rmtree(directory, ignore_errors=True)


def _print_demo_banner(settings: Settings, host: str, port: int) -> None:
    from hub.auth import issue_demo_token

    token = issue_demo_token(settings)
    print(f"Influencer Hub demo on http://{host}:{port}/graphql (GraphiQL in a browser)")
    print("GraphiQL opens with this token; for other clients, send the header:")
    print(f'{{"Authorization": "Bearer {token}"}}', flush=True)


def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from hub.store.engine import create_engine
    from hub.store.migrate import upgrade

    async def run() -> bool:
        engine = create_engine(settings)
        try:
            return await upgrade(engine)
        finally:
            await engine.dispose()

    print("migrated to the newest revision" if asyncio.run(run()) else "already up to date")
    return 0


def _seed(settings: Settings, args: argparse.Namespace) -> int:
    from hub.store import seed
    from hub.store.engine import create_engine
    from hub.store.migrate import upgrade

    plan = seed.SeedPlan(
        influencers=args.influencers, campaigns=args.campaigns, tenants=args.tenants, seed=args.seed
    )
    started = time.perf_counter()

    async def run() -> None:
        engine = create_engine(settings)
        try:
            await upgrade(engine)
            if not await seed.is_empty(engine):
                if not args.reset:
                    raise CommandError("the store already has data; pass --reset to replace it")
                await seed.reset(engine)
            await seed.seed(engine, plan, progress=_progress_bar)
        finally:
            await engine.dispose()

    asyncio.run(run())
    print(
        f"seeded {plan.tenants} tenants, {plan.influencers} influencers and "
        f"{plan.campaigns} campaigns in {time.perf_counter() - started:.1f} s"
    )
    return 0


def _ingest_metrics(settings: Settings, args: argparse.Namespace) -> int:
    if settings.social_url is None:
        raise CommandError("HUB_SOCIAL_URL is not set: there is no social API to ingest from")
    until = args.until or datetime.now(UTC).date()
    since = args.since or until - timedelta(days=29)
    if until < since:
        raise CommandError("--until is before --since")
    if (until - since).days >= 366:
        raise CommandError("at most 366 days at a time: run it again for the next stretch")

    from hub.ingest import IngestBusy, ingest_metrics
    from hub.sources.registry import build_sources
    from hub.sources.social import SocialSource
    from hub.sources.store import Store
    from hub.store.engine import create_engine
    from hub.store.leases import Leases
    from hub.store.migrate import upgrade

    async def run() -> str:
        engine = create_engine(settings)
        sources = build_sources(settings, transport=None, cache=None, metrics=None)
        try:
            await upgrade(engine)
            store = Store(engine)
            assert isinstance(sources.social, SocialSource)
            report = await ingest_metrics(
                store,
                sources.social,
                Leases(store.sessions),
                since=since,
                until=until,
                tenant=args.tenant,
                progress=_progress_bar,
            )
        except IngestBusy as busy:
            raise CommandError(f"{busy}: try again once it is done") from None
        except SourceError as error:
            raise CommandError(
                f"{error.message} What was ingested is kept; run the same command again to go on."
            ) from None
        finally:
            await sources.aclose()
            await engine.dispose()
        resumed = f", resumed after account {report.resumed_after}" if report.resumed_after else ""
        return f"kept {report.days} days of {report.accounts} accounts{resumed}"

    print(asyncio.run(run()))
    return 0


def _sync_crm(settings: Settings, args: argparse.Namespace) -> int:
    if settings.crm_url is None:
        raise CommandError("HUB_CRM_URL is not set: there is no CRM to sync with")

    from hub import tenants
    from hub.crm_sync import CrmOutbox, SyncBusy, sync_crm
    from hub.sources.cache import subject_tag
    from hub.sources.crm import CrmSource
    from hub.sources.registry import build_sources
    from hub.sources.store import Store
    from hub.store.engine import create_engine
    from hub.store.leases import Leases
    from hub.store.migrate import upgrade

    policy = _checked_policies(settings).sync

    async def run() -> list[str]:
        engine = create_engine(settings)
        sources = build_sources(settings, transport=None, cache=None, metrics=None)
        cache = _shared_cache(settings)
        unpurged: list[str] = []

        async def forget(contact_id: str, crm_id: str) -> None:
            # What running hubs cached of a contact the sync changed.
            for subject in (contact_id, crm_id):
                if not await _purge(cache, subject_tag(subject)):
                    unpurged.append(subject)

        lines = []
        try:
            await upgrade(engine)
            store = Store(engine)
            crm = sources.crm
            assert isinstance(crm, CrmSource)
            known = {t.id: t for t in await tenants.listed(store)}
            if args.tenant is not None and args.tenant not in known:
                raise CommandError(f"no tenant {args.tenant}")
            chosen = [args.tenant] if args.tenant else sorted(known)
            for tenant in chosen:
                if known[tenant].status != tenants.ACTIVE:
                    lines.append(f"{tenant}: skipped ({known[tenant].status})")
                    continue
                report = await sync_crm(
                    store,
                    crm,
                    policy,
                    Leases(store.sessions),
                    tenant=tenant,
                    full=args.full,
                    progress=functools.partial(_progress_count, f"crm {tenant}"),
                    on_contact=forget,
                )
                _progress_count(f"crm {tenant}", report.tally.seen, done_all=True)
                t = report.tally
                lines.append(
                    f"{tenant}: {t.seen} records, {t.imported} imported, {t.updated} updated, "
                    f"{t.conflicts} conflicts, {t.skipped_erased} erased people skipped, "
                    f"{t.failures} failures" + (" (resumed)" if report.resumed else "")
                )
            written = await CrmOutbox(store, lambda: crm, interval_s=1).run_once(limit=10_000)
            lines.append(f"{written} changes written back to the CRM")
            if unpurged:
                lines.append(
                    f"shared cache: unreachable, {len(unpurged)} entries not purged: "
                    "running hubs may serve them until they expire"
                )
        except SyncBusy as busy:
            raise CommandError(f"{busy}: try again once it is done") from None
        except SourceError as error:
            raise CommandError(
                f"{error.message} What was synced is kept; run the same command again to go on."
            ) from None
        finally:
            await sources.aclose()
            if cache is not None:
                await cache.aclose()
            await engine.dispose()
        return lines

    for line in asyncio.run(run()):
        print(line)
    return 0


def _tenants(settings: Settings, args: argparse.Namespace) -> int:
    from hub import tenants
    from hub.sources.store import Store
    from hub.store.engine import create_engine
    from hub.store.migrate import upgrade

    if args.action == "export":
        return _tenants_export(settings, args)
    if args.action == "delete":
        return _tenants_delete(settings, args)

    async def run() -> list[str]:
        engine = create_engine(settings)
        try:
            await upgrade(engine)
            store = Store(engine)
            if args.action == "create":
                made = await tenants.create(store, args.id, args.name or args.id)
                return [f"created tenant {made.id} ({made.name})"]
            if args.action in ("suspend", "resume"):
                status = tenants.SUSPENDED if args.action == "suspend" else tenants.ACTIVE
                await tenants.set_status(store, args.id, status)
                return [f"tenant {args.id} is {status}"]
            return [f"{t.id}\t{t.status}\t{t.name}" for t in await tenants.listed(store)]
        except tenants.TenantError as error:
            raise CommandError(str(error)) from None
        finally:
            await engine.dispose()

    for line in asyncio.run(run()):
        print(line)
    return 0


def _tenants_export(settings: Settings, args: argparse.Namespace) -> int:
    """The tenant's rows as NDJSON on stdout or in `--output`, written a page at a time."""
    from hub.sources.store import Store
    from hub.store.engine import create_engine
    from hub.store.migrate import upgrade
    from hub.store.tables import AuditEventRow
    from hub.tenant_export import export_tenant
    from hub.tenants import TenantError, find

    async def run() -> dict[str, int]:
        engine = create_engine(settings)
        try:
            await upgrade(engine)
            store = Store(engine)
            if await find(store, args.id) is None:
                raise CommandError(f"no tenant {args.id}")
            async with store.sessions.begin() as session:
                session.add(
                    AuditEventRow(
                        at=datetime.now(UTC),
                        tenant_id=args.id,
                        principal="cli",
                        coordinate="tenant.export",
                        decision="exported",
                    )
                )
            with contextlib.ExitStack() as files:
                out = (
                    files.enter_context(args.output.open("w", encoding="utf-8"))
                    if args.output is not None
                    else sys.stdout
                )

                def write(chunk: str) -> None:
                    out.write(chunk)
                    out.flush()

                return await export_tenant(store, args.id, write)
        except TenantError as error:
            raise CommandError(str(error)) from None
        except OSError as error:
            raise CommandError(f"cannot write the export: {error}") from None
        finally:
            await engine.dispose()

    counts = asyncio.run(run())
    summary = ", ".join(f"{count} {kind}" for kind, count in counts.items())
    print(f"exported tenant {args.id}: {summary}", file=sys.stderr)
    return 0


def _tenants_delete(settings: Settings, args: argparse.Namespace) -> int:
    """Without `--yes`, what would go (exit 2); with it, the tenant erased and deleted."""
    from hub.responses import ANSWERS_TAG
    from hub.sources.cache import subject_tag
    from hub.sources.registry import build_sources
    from hub.sources.store import Store
    from hub.store.engine import create_engine
    from hub.store.migrate import upgrade
    from hub.tenant_deletion import delete_tenant, holdings
    from hub.tenants import TenantError

    async def run() -> tuple[int, list[str]]:
        engine = create_engine(settings)
        cache = _shared_cache(settings)
        sources = build_sources(settings, transport=None, cache=None, metrics=None)

        async def purge(tag: str) -> bool:
            return await _purge(cache, tag)

        async def forget(subject: str) -> bool:
            return await purge(subject_tag(subject))

        try:
            await upgrade(engine)
            store = Store(engine)
            if not args.yes:
                held = await holdings(store, args.id)
                return 2, [
                    f"tenant {args.id} holds {held.describe()}: "
                    "pass --yes to erase and delete them all"
                ]
            report = await delete_tenant(store, args.id, crm=sources.crm, forget=forget)
            if report.cache_purged:  # kept answers may hold what was just erased
                report.cache_purged = await purge(ANSWERS_TAG)
        except TenantError as error:
            raise CommandError(str(error)) from None
        finally:
            await sources.aclose()
            if cache is not None:
                await cache.aclose()
            await engine.dispose()
        lines = [f"tenant {args.id} is deleted", *report.lines()]
        if sources.crm is None:
            lines.append("crm: HUB_CRM_URL is not set: no CRM record was deleted")
        return (0 if report.cache_purged else 1), lines

    code, lines = asyncio.run(run())
    for line in lines:
        print(line, file=sys.stderr if code == 2 else sys.stdout)
    return code


def _shared_cache(settings: Settings) -> Cache | None:
    """The cache running hubs share (Redis), to purge what a command changed; None with the
    in-process cache, which only its hub holds."""
    from hub.sources.cache import create_cache

    if not settings.cache_url.startswith(("redis://", "rediss://")):
        return None
    return create_cache(settings.cache_url, namespace=settings.cache_namespace, local_ttl_s=0)


async def _purge(cache: Cache | None, tag: str) -> bool:
    """Drop every entry tagged `tag` on every replica; False when the cache is away."""
    from hub.errors import SourceUnavailable

    if cache is None:
        return True
    try:
        await cache.purge_tag(tag)
    except SourceUnavailable:
        return False
    return True


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _progress_bar(stage: str, done: int, total: int) -> None:
    width = 30
    filled = width * done // max(total, 1)
    end = "\n" if done >= total else ""
    bar = "#" * filled + "." * (width - filled)
    print(f"\r{stage:<12} [{bar}] {done}/{total}", end=end, file=sys.stderr, flush=True)


def _progress_count(stage: str, done: int, *, done_all: bool = False) -> None:
    """A count of what a job of unknown size went through so far."""
    print(
        f"\r{stage:<12} {done} records", end="\n" if done_all else "", file=sys.stderr, flush=True
    )


def _schema(settings: Settings, _args: argparse.Namespace) -> int:
    from hub.schema.root import build_schema

    print(build_schema(settings).as_str())
    return 0


def _simulate(_settings: Settings, args: argparse.Namespace) -> int:
    from hub.simulators import SIMULATOR_NAMES, SimulatorConfig, start_simulators
    from hub.store.seed import SeedPlan

    plan = SeedPlan.demo()
    config = SimulatorConfig(
        seed=args.seed,
        influencers=args.influencers or plan.influencers,
        latency_ms=(args.latency_ms, args.latency_ms),
    )
    ports = {"crm": args.port, "social": args.port + 1, "discovery": args.port + 2}

    async def run() -> None:
        running = await start_simulators(
            {name: config for name in SIMULATOR_NAMES}, ports=ports if args.port else None
        )
        try:
            for name, url in running.urls.items():
                print(f"HUB_{name.upper()}_URL={url}", flush=True)
            print("Press Ctrl-C to stop.", flush=True)
            await asyncio.Event().wait()
        finally:
            await running.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from hub.auth import issue_token

    try:
        token = issue_token(
            settings,
            subject=args.subject or f"{args.role[0]}@{args.tenant}",
            tenant=args.tenant,
            roles=args.role,
            scopes=" ".join(args.scope or []).split(),
            purpose=args.purpose,
            campaigns=args.campaign,
            client_id=args.client_id,
            ttl_s=args.ttl,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    print(token)
    return 0


def _checked_policies(settings: Settings) -> Policies:
    from hub.policies import load_for_schema
    from hub.policy.access import PolicyError
    from hub.schema.root import build_schema

    try:
        return load_for_schema(settings.policies_dir, build_schema(settings))
    except PolicyError as exc:
        raise CommandError(str(exc)) from None


def _cost(settings: Settings, args: argparse.Namespace) -> int:
    from hub.cost_report import render_cost_report
    from hub.errors import HubError
    from hub.schema.root import build_schema

    try:
        query = args.file.read_text(encoding="utf-8")
        variables = json.loads(args.variables)
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    if not isinstance(variables, dict):
        raise CommandError("--variables must be a JSON object")
    schema = build_schema(settings)
    policies = _checked_policies(settings)
    try:
        print(
            render_cost_report(
                schema._schema,
                query,
                policy=policies.cost,
                operation_name=args.operation,
                variables=variables,
                roles=args.role,
                client_id=args.client_id,
            )
        )
    except HubError as exc:
        raise CommandError(f"{exc.code}: {exc.message}") from None
    return 0


def _policies_check(settings: Settings, _args: argparse.Namespace) -> int:
    policies = _checked_policies(settings)
    print(
        f"policies in {settings.policies_dir} are valid: "
        f"{len(policies.access.roles)} roles, {len(policies.access.scopes)} scopes, "
        f"{len(policies.access.fields)} field rules"
    )
    uncovered = policies.field_scopes.uncovered()
    if uncovered:
        print(f"{len(uncovered)} fields no rule covers (denied to everyone):")
        for type_name, field_name in uncovered:
            print(f"  {type_name}.{field_name}")
    else:
        print("every field is covered by a rule")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the GraphQL endpoint")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--demo", action="store_true", help="seed demo data into an empty store")
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="apply the store's migrations")
    migrate.set_defaults(run=_migrate)

    seed = commands.add_parser("seed", help="fill the store with deterministic data")
    seed.add_argument("--influencers", type=int, default=10_000)
    seed.add_argument("--campaigns", type=int, default=300)
    seed.add_argument("--tenants", type=int, default=3)
    seed.add_argument("--seed", type=int, default=7)
    seed.add_argument("--reset", action="store_true", help="delete existing rows first")
    seed.set_defaults(run=_seed)

    simulate = commands.add_parser("simulate", help="run the source simulators alone")
    simulate.add_argument("--port", type=int, default=0, help="CRM port; social +1, discovery +2")
    simulate.add_argument("--seed", type=int, default=7)
    simulate.add_argument("--influencers", type=int, default=0, help="default: the demo's")
    simulate.add_argument("--latency-ms", type=int, default=0)
    simulate.set_defaults(run=_simulate)

    ingest = commands.add_parser("ingest", help="fill the store's history from a source")
    ingested = ingest.add_subparsers(dest="what", required=True)
    metrics = ingested.add_parser("metrics", help="daily metrics of social accounts")
    metrics.add_argument("--since", type=_date, help="first day (default: 29 days before --until)")
    metrics.add_argument("--until", type=_date, help="last day (default: today, UTC)")
    metrics.add_argument("--tenant", help="only the accounts of this tenant's campaign members")
    metrics.set_defaults(run=_ingest_metrics)

    sync = commands.add_parser("sync", help="keep the store alike with a source")
    synced = sync.add_subparsers(dest="what", required=True)
    crm = synced.add_parser("crm", help="contacts, both ways, by policies/sync.yaml")
    crm.add_argument("--full", action="store_true", help="every record, not only the changed")
    crm.add_argument("--tenant", help="only this tenant (default: every active one)")
    crm.set_defaults(run=_sync_crm)

    tenant_command = commands.add_parser(
        "tenants", help="create, list, suspend, resume, export, delete tenants"
    )
    tenant_actions = tenant_command.add_subparsers(dest="action", required=True)
    created = tenant_actions.add_parser("create", help="a new tenant, usable at once")
    created.add_argument("id")
    created.add_argument("--name")
    tenant_actions.add_parser("list", help="every tenant, its status and name")
    for action, text in (("suspend", "refuse its tokens everywhere"), ("resume", "serve again")):
        tenant_actions.add_parser(action, help=text).add_argument("id")
    exported = tenant_actions.add_parser("export", help="every row of the tenant as NDJSON")
    exported.add_argument("id")
    exported.add_argument("--output", type=Path, help="a file (default: standard output)")
    deleted = tenant_actions.add_parser("delete", help="erase the tenant everywhere, for good")
    deleted.add_argument("id")
    deleted.add_argument("--yes", action="store_true", help="do it (without: what would go)")
    tenant_command.set_defaults(run=_tenants)

    schema = commands.add_parser("schema", help="print the SDL")
    schema.set_defaults(run=_schema)

    token = commands.add_parser("token", help="issue a development token (HS256)")
    token.add_argument("--tenant", required=True)
    token.add_argument("--role", action="append", required=True)
    token.add_argument("--scope", action="append", help="space-separated scopes; repeatable")
    token.add_argument("--purpose")
    token.add_argument("--campaign", action="append")
    token.add_argument("--client-id")
    token.add_argument("--subject")
    token.add_argument("--ttl", type=int, default=3600, help="seconds")
    token.set_defaults(run=_token)

    cost = commands.add_parser("cost", help="explain what a query costs and which limits it meets")
    cost.add_argument("file", type=Path, help="a file holding the GraphQL document")
    cost.add_argument("--operation", help="the operation to cost, when the file has several")
    cost.add_argument("--variables", help="variables as a JSON object", default="{}")
    cost.add_argument("--role", action="append", default=[], help="roles whose limits apply")
    cost.add_argument("--client-id", help="the client whose tier applies")
    cost.set_defaults(run=_cost)

    policies = commands.add_parser("policies", help="policy files")
    policy_commands = policies.add_subparsers(dest="policy_command", required=True)
    check = policy_commands.add_parser("check", help="validate the policy files")
    check.set_defaults(run=_policies_check)
    return parser


if __name__ == "__main__":
    sys.exit(main())
