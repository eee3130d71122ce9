"""The composition root: the one place that names concrete classes and wires them, in a visible order."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tollgate.api.gateway import GatewayApp
from tollgate.budgets.pricing_check import check_budget_prices
from tollgate.ledger import open_ledger
from tollgate.ledger.writer import LedgerWriter
from tollgate.logs import configure_logging
from tollgate.pricing import PriceTable
from tollgate.services.admission import Admission, CounterStore
from tollgate.services.authenticator import Authenticator
from tollgate.services.metrics import MetricsRegistry
from tollgate.services.proxy import ProxyService
from tollgate.services.recorder import FanOutRecorder, LogRecorder, MemoryRecorder
from tollgate.services.router import ModelRouter
from tollgate.settings import Settings, config_path_from_environment, load_settings
from tollgate.stores import open_counter_store
from tollgate.upstream.client import UpstreamClient


@dataclass
class Gateway:
    """Everything ``create_app`` built, for the server and for tests that look inside."""

    app: GatewayApp
    settings: Settings
    store: CounterStore
    admission: Admission
    recorder: MemoryRecorder
    upstream: UpstreamClient
    metrics: MetricsRegistry
    startup_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    shutdown_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def startup(self) -> None:
        for hook in self.startup_hooks:
            await hook()

    async def shutdown(self) -> None:
        for hook in reversed(self.shutdown_hooks):
            await hook()

    async def ready(self) -> None:
        await self.store.ping()


def _simulated_provider_sockets(settings: Settings) -> dict[str, socket.socket]:
    """A loopback socket per ``type: simulated`` provider, bound now so its URL is known before start."""
    sockets = {}
    for name, provider in settings.providers.items():
        if provider.type == "simulated":
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sockets[name] = sock
    return sockets


def build_gateway(settings: Settings) -> Gateway:
    # 1. Providers: configured base URLs, or an in-process simulator on a loopback socket.
    sim_sockets = _simulated_provider_sockets(settings)
    base_urls = {
        name: (f"http://127.0.0.1:{sim_sockets[name].getsockname()[1]}" if name in sim_sockets else p.base_url)
        for name, p in settings.providers.items()
    }
    # 2. Prices: a model that can fall under a USD budget must have one (never silently free).
    prices = PriceTable(settings.prices)
    check_budget_prices(settings, prices.price_for)
    # 3. Stores.
    store = open_counter_store(settings.store)
    ledger = open_ledger(settings.ledger, timezone=settings.timezone)  # migrate() builds the rollup for it
    # 4. Services.
    authenticator = Authenticator(settings.keys)
    router = ModelRouter(settings.models, settings.providers, base_urls)
    metrics = MetricsRegistry(
        [model.name for model in settings.models],
        developer_labels=settings.metrics.developer_labels,
        repo_labels=settings.metrics.repo_labels,
    )
    admission = Admission(settings, store, observe_store=metrics.observe_store)
    memory = MemoryRecorder()
    recorder = FanOutRecorder([LogRecorder(), memory, metrics])
    upstream = UpstreamClient()
    proxy = ProxyService(
        authenticator=authenticator,
        router=router,
        admission=admission,
        upstream=upstream,
        prices=prices,
        recorder=recorder,
        fallback_on=settings.fallback_on,
    )
    gateway = Gateway(
        app=None,  # type: ignore[arg-type]  # set just below: the app needs the gateway's hooks
        settings=settings,
        store=store,
        admission=admission,
        recorder=memory,
        upstream=upstream,
        metrics=metrics,
    )
    # 5. The HTTP edge.
    gateway.app = GatewayApp(
        proxy=proxy,
        authenticator=authenticator,
        router=router,
        max_body_bytes=settings.max_body_bytes,
        startup=gateway.startup,
        shutdown=gateway.shutdown,
        ready=gateway.ready,
        metrics=metrics,
    )
    # 6. Lifecycle: simulators first up, last down; the ledger writer drains the store's outbox (settle writes the
    #    ledger entry there atomically) and flushes on shutdown; then the upstream pool and the stores close.
    for sock in sim_sockets.values():
        _add_simulator(gateway, sock)
    writer = LedgerWriter(ledger, outbox=store)

    async def start_ledger() -> None:
        await ledger.migrate()
        await writer.start()

    gateway.startup_hooks.append(start_ledger)
    gateway.shutdown_hooks.append(ledger.close)
    gateway.shutdown_hooks.append(store.close)
    gateway.shutdown_hooks.append(upstream.close)
    gateway.shutdown_hooks.append(writer.close)
    return gateway


def _add_simulator(gateway: Gateway, sock: socket.socket) -> None:
    from tollgate.simulator import Simulator, start_on_socket

    stop: list[Callable[[], Awaitable[None]]] = []

    async def start() -> None:
        stop.append(await start_on_socket(Simulator(record=False), sock))

    async def shutdown() -> None:
        for hook in stop:
            await hook()

    gateway.startup_hooks.insert(0, start)
    gateway.shutdown_hooks.insert(0, shutdown)


def create_app(settings: Settings) -> GatewayApp:
    return build_gateway(settings).app


def create_app_from_environment() -> GatewayApp:
    """The factory each server worker calls (``tollgate serve`` passes the config path in the environment)."""
    settings = load_settings(config_path_from_environment())
    configure_logging(settings.log_level)  # worker processes are spawned: configure their logging here too
    return create_app(settings)
