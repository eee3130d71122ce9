"""Model routing: a caller's model name (or alias) to the ordered deployments that can serve it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tollgate.errors import BadRequest, NotFound
from tollgate.settings import Deployment, ModelSettings, ProviderSettings
from tollgate.types import Dialect
from tollgate.upstream.client import Timeouts
from tollgate.upstream.credentials import upstream_url

# The API families each provider type speaks.
_DIALECTS: Mapping[str, frozenset[Dialect]] = {
    "openai": frozenset({Dialect.OPENAI}),
    "openai-compatible": frozenset({Dialect.OPENAI}),
    "anthropic": frozenset({Dialect.ANTHROPIC}),
    "simulated": frozenset({Dialect.OPENAI, Dialect.ANTHROPIC}),
}


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment, resolved: where to send, with which credentials and timeouts."""

    deployment: Deployment
    provider: ProviderSettings
    base_url: str
    timeouts: Timeouts

    def url(self, path: str) -> str:
        return upstream_url(self.provider, self.base_url, path)


@dataclass(frozen=True, slots=True)
class Route:
    model: ModelSettings
    targets: tuple[Target, ...]


class ModelRouter:
    """Resolves model names in memory; built once at start (simulated providers get their base URL then)."""

    def __init__(
        self,
        models: Sequence[ModelSettings],
        providers: Mapping[str, ProviderSettings],
        base_urls: Mapping[str, str],
    ) -> None:
        self._routes: dict[tuple[str, Dialect], Route] = {}
        self._names: dict[str, ModelSettings] = {}
        for model in models:
            self._names[model.name] = model
            for dialect in Dialect:
                targets = tuple(
                    Target(
                        deployment=d,
                        provider=providers[d.provider],
                        base_url=base_urls[d.provider],
                        timeouts=Timeouts(providers[d.provider].connect_timeout_s, providers[d.provider].timeout_s),
                    )
                    for d in model.deployments
                    if dialect in _DIALECTS[providers[d.provider].type]
                )
                if targets:
                    self._routes[(model.name, dialect)] = Route(model=model, targets=targets)

    @property
    def model_names(self) -> list[str]:
        return list(self._names)

    def resolve(self, model: str, dialect: Dialect) -> Route:
        route = self._routes.get((model, dialect))
        if route is not None:
            return route
        if model in self._names:
            other = "/v1/messages" if dialect is Dialect.OPENAI else "/v1/chat/completions"
            raise BadRequest(f"model {model!r} is not served in this API format; call it through {other}")
        raise NotFound(f"the model {model!r} does not exist or you do not have access to it")
