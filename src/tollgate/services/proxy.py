"""The request pipeline: authenticate → route → estimate → admit → forward → relay while metering → settle.

``ProxyService.handle`` knows nothing of HTTP servers: it takes the endpoint, the caller's headers and body, and
returns either a ``FullResponse`` or a ``StreamingResponse`` whose ``MeteredStream`` settles in its close path. It
raises ``TollgateError`` subclasses; the HTTP edge turns them into responses. Every admitted request is settled
exactly once: with the provider's usage, the usage counted from a cut stream, or zero when the upstream failed.

The settle has left the process before the answer (or a stream's last event) goes out; the store's confirmation and
the usage log line come after it (``After``, which the edge awaits once the answer is sent; decision 0018).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tollgate.errors import (
    BadRequest,
    BudgetExceeded,
    PermissionDenied,
    StoreUnavailable,
    TollgateError,
    UpstreamError,
    UpstreamTimeout,
)
from tollgate.pricing import PriceTable
from tollgate.providers import Endpoint, PreparedRequest, StreamMeter, error_from_body, prepare_request, usage_from_body
from tollgate.services.admission import Admission, Ticket
from tollgate.services.authenticator import Authenticator
from tollgate.services.metered_stream import MeteredStream
from tollgate.services.recorder import UsageRecorder
from tollgate.services.router import ModelRouter, Route, Target
from tollgate.tokens import estimate_input_tokens, output_bound
from tollgate.types import Caller, Usage, UsageRecord
from tollgate.upstream.client import UpstreamClient, UpstreamResponse, is_connect_failure
from tollgate.upstream.credentials import upstream_headers

_log = logging.getLogger("tollgate.proxy")

# Endpoints that generate no output tokens.
_NO_OUTPUT = frozenset({"embeddings", "count_tokens"})


class After:
    """What is left once the answer has gone out: wait for the store to confirm the settle, then log the record."""

    __slots__ = ("_confirmation", "_record", "_recorder")

    def __init__(self, record: UsageRecord, recorder: UsageRecorder, confirmation: Awaitable[None] | None) -> None:
        self._record = record
        self._recorder = recorder
        self._confirmation = confirmation

    async def __call__(self) -> None:
        confirmation, self._confirmation = self._confirmation, None
        if confirmation is not None:
            try:
                await confirmation
            except StoreUnavailable:
                _unsettled(self._record)
        self._recorder.record(self._record)


@dataclass(slots=True)
class FullResponse:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str]
    after: After


@dataclass(slots=True)
class StreamingResponse:
    status: int
    content_type: str
    stream: MeteredStream[After]
    headers: dict[str, str]


ProxyResponse = FullResponse | StreamingResponse


def parse_body(body: bytes) -> dict[str, Any]:
    """The request JSON object; ``BadRequest`` when it is not one or has no usable ``model``."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("the request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("the request body must name a model ('model': a non-empty string)")
    return payload


class ProxyService:
    def __init__(
        self,
        *,
        authenticator: Authenticator,
        router: ModelRouter,
        admission: Admission,
        upstream: UpstreamClient,
        prices: PriceTable,
        recorder: UsageRecorder,
        fallback_on: frozenset[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._authenticator = authenticator
        self._router = router
        self._admission = admission
        self._upstream = upstream
        self._prices = prices
        self._recorder = recorder
        self._fallback_on = fallback_on
        self._clock = clock

    async def handle(
        self, endpoint: Endpoint, headers: Mapping[str, str], body: bytes, request_id: str
    ) -> ProxyResponse:
        started = time.perf_counter()
        record = UsageRecord(
            request_id=request_id,
            started_at=self._clock(),
            key_name=None,
            developer=None,
            team=None,
            repo=None,
            env=None,
            endpoint=endpoint.path,
            model=None,
        )
        try:
            key = self._authenticator.authenticate(headers)
            _stamp_caller(record, key.caller)
            payload = parse_body(body)
            model: str = payload["model"]
            record.model = model
            if not key.may_use(model):
                raise PermissionDenied(f"this key may not use the model {model!r}")
            route = self._router.resolve(model, endpoint.dialect)
            input_estimate = estimate_input_tokens(payload)
            output_estimate = 0 if endpoint.kind in _NO_OUTPUT else output_bound(payload, route.model.output_cap)
            record.estimate_tokens = input_estimate + output_estimate
            ticket = await self._admit(endpoint, key.caller, route, input_estimate, output_estimate, request_id)
        except BudgetExceeded as exc:
            self._close_record(record, started, exc.status, "rejected")
            record.rejected_by = exc.budget
            try:
                await self._admission.record_rejection(record)
            except StoreUnavailable:
                _log.error("rejection of request %s not written to the outbox: store unavailable", request_id)
            self._recorder.record(record)
            raise
        except TollgateError as exc:
            self._close_record(record, started, exc.status, "error")
            self._recorder.record(record)
            raise

        try:
            response, target, prepared = await self._forward(endpoint, route, payload, headers)
        except UpstreamError as exc:
            await (await self._settle(ticket, record, started, exc.status, "upstream_error", Usage(), "none"))()
            raise
        record.upstream_model = target.deployment.upstream_model
        record.provider = target.provider.name
        record.deployment = target.deployment.name
        extra = _budget_headers(ticket)

        if prepared.stream and response.status == 200 and response.content_type.startswith("text/event-stream"):
            record.streamed = True

            async def finish(usage: Usage, source: str, outcome: str, ttft_ms: float | None) -> After:
                record.ttft_ms = ttft_ms
                return await self._settle(ticket, record, started, 200, outcome, usage, source)

            stream = MeteredStream(
                response,
                StreamMeter(endpoint, prepared.hide_usage),
                input_estimate=input_estimate,
                started=started,
                finish=finish,
            )
            return StreamingResponse(200, response.content_type, stream, extra)
        return await self._complete(endpoint, ticket, record, started, response, extra)

    async def _admit(
        self,
        endpoint: Endpoint,
        caller: Caller,
        route: Route,
        input_estimate: int,
        output_estimate: int,
        request_id: str,
    ) -> Ticket | None:
        if not endpoint.metered:
            return None
        model = route.model.name
        price = self._prices.price_for(model, route.targets[0].deployment.upstream_model)
        micros = self._prices.estimate_micros(price, input_estimate, output_estimate) if price is not None else 0
        return await self._admission.admit(
            caller,
            model,
            estimate_tokens=input_estimate + output_estimate,
            estimate_micros=micros,
            request_id=request_id,
        )

    async def _forward(
        self, endpoint: Endpoint, route: Route, payload: dict[str, Any], headers: Mapping[str, str]
    ) -> tuple[UpstreamResponse, Target, PreparedRequest]:
        """Send to the first deployment that answers; fall back on the configured causes."""
        hide_usage: bool | None = None
        last = len(route.targets) - 1
        for index, target in enumerate(route.targets):
            prepared = prepare_request(endpoint, payload, target.deployment.upstream_model)
            # The first preparation may add stream_options to the body; later ones must still hide that chunk.
            if hide_usage is None:
                hide_usage = prepared.hide_usage
            elif hide_usage != prepared.hide_usage:
                prepared = PreparedRequest(prepared.body, prepared.stream, hide_usage)
            try:
                response = await self._upstream.send(
                    target.url(endpoint.path),
                    upstream_headers(target.provider, headers),
                    prepared.body,
                    target.timeouts,
                )
            except UpstreamError as exc:
                # A connection that broke after carrying the request is no cause: the provider may be generating.
                cause = _failure_cause(exc)
                if index < last and cause in self._fallback_on:
                    continue
                raise
            if index < last and self._falls_back_on_status(response.status):
                response.close()
                continue
            return response, target, prepared
        raise AssertionError("a route has at least one target")  # pragma: no cover

    def _falls_back_on_status(self, status: int) -> bool:
        return (status >= 500 and "5xx" in self._fallback_on) or (status == 429 and "429" in self._fallback_on)

    async def _complete(
        self,
        endpoint: Endpoint,
        ticket: Ticket | None,
        record: UsageRecord,
        started: float,
        response: UpstreamResponse,
        extra: dict[str, str],
    ) -> FullResponse:
        try:
            body = await response.read()
        except UpstreamError as exc:
            await (await self._settle(ticket, record, started, exc.status, "upstream_error", Usage(), "none"))()
            raise
        if response.status >= 400:
            error = error_from_body(endpoint.dialect, response.status, body)
            await (await self._settle(ticket, record, started, error.status, "upstream_error", Usage(), "none"))()
            raise error
        usage = usage_from_body(endpoint, body)
        source = "provider" if usage is not None else "none"
        after = await self._settle(ticket, record, started, response.status, "ok", usage or Usage(), source)
        return FullResponse(response.status, response.content_type, body, extra, after)

    async def _settle(
        self,
        ticket: Ticket | None,
        record: UsageRecord,
        started: float,
        status: int,
        outcome: str,
        usage: Usage,
        source: str,
    ) -> After:
        """Charge the actual usage (releasing the reservation) and write the ledger entry — once per request.

        Returns once the settle has left the process; the returned ``After`` waits for the store and logs the record.
        """
        self._close_record(record, started, status, outcome)
        record.usage = usage
        record.usage_source = source
        if usage.total_tokens and record.model is not None:
            price = self._prices.price_for(record.model, record.upstream_model or record.model)
            record.cost_micros = self._prices.cost_micros(price, usage) if price is not None else 0
        confirmation = None
        if ticket is not None:
            try:
                confirmation = await self._admission.hand_off(ticket, record)
            except StoreUnavailable:
                _unsettled(record)
        return After(record, self._recorder, confirmation)

    @staticmethod
    def _close_record(record: UsageRecord, started: float, status: int, outcome: str) -> None:
        record.status = status
        record.outcome = outcome
        record.latency_ms = round((time.perf_counter() - started) * 1000, 3)


def _failure_cause(error: UpstreamError) -> str | None:
    """The ``fallback_on`` cause of a failed upstream call: ``connect`` when nothing reached the provider (connect
    timeouts included), ``timeout`` when it did not answer in time, None when the connection broke afterwards."""
    if is_connect_failure(error):
        return "connect"
    if isinstance(error, UpstreamTimeout):
        return "timeout"
    return None


def _unsettled(record: UsageRecord) -> None:
    # The answer is already bought; the usage log line still carries the full record.
    _log.error("settle failed for request %s: counter store unavailable", record.request_id)
    record.outcome = f"{record.outcome}+unsettled"


def _stamp_caller(record: UsageRecord, caller: Caller) -> None:
    record.key_name = caller.key_name
    record.developer = caller.developer
    record.team = caller.team
    record.repo = caller.repo
    record.env = caller.env


def _budget_headers(ticket: Ticket | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if ticket is None:
        return headers
    if ticket.remaining_tokens is not None:
        headers["x-tollgate-budget-remaining-tokens"] = str(ticket.remaining_tokens)
    if ticket.remaining_usd is not None:
        headers["x-tollgate-budget-remaining-usd"] = f"{ticket.remaining_usd:.6f}"
    return headers
