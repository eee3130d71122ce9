"""What a request costs: model prices (built-in table + configured overrides) and integer cost arithmetic.

Prices are held as integer **micro-dollars per million tokens** (``$2.50 / 1M`` is ``2_500_000``), so a cost in
micro-dollars is ``tokens × price / 1_000_000`` — computed exactly on integers and rounded **up** once per request,
so a request is never under-charged and is over-charged by less than one micro-dollar.

Lookup (``PriceTable.price_for``): the first of the given model names that has a price wins. For each name the
configured overrides are tried before the built-in table, first under the exact name, then under its base name with
a snapshot suffix removed (``gpt-4o-mini-2024-07-18`` → ``gpt-4o-mini``, ``claude-3-5-haiku-20241022`` →
``claude-3-5-haiku``, ``gpt-3.5-turbo-0125`` → ``gpt-3.5-turbo``, ``claude-3-7-sonnet-latest`` → ``claude-3-7-sonnet``).
An exact entry for a snapshot (``gpt-4o-2024-05-13``) beats its base name's.

The built-in table's sources and date are in ``docs/pricing.md``; a new price goes into ``_BUILTIN_PRICES`` (or the
``prices:`` section of the configuration), nothing else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Final

from tollgate.errors import ConfigError
from tollgate.settings import Price
from tollgate.types import Usage

MICROS_PER_USD: Final = 1_000_000
TOKENS_PER_PRICE_UNIT: Final = 1_000_000  # prices are per million tokens

# model -> (input, cached input, 5-minute cache write, output) in micro-dollars per million tokens;
# None: no separate rate (charged at the input price). Sources and date: docs/pricing.md.
_BUILTIN_PRICES: Final[Mapping[str, tuple[int, int | None, int | None, int]]] = {
    # OpenAI: GPT-5 family
    "gpt-5": (1_250_000, 125_000, None, 10_000_000),
    "gpt-5-mini": (250_000, 25_000, None, 2_000_000),
    "gpt-5-nano": (50_000, 5_000, None, 400_000),
    "gpt-5-codex": (1_250_000, 125_000, None, 10_000_000),
    "gpt-5.1": (1_250_000, 125_000, None, 10_000_000),
    "gpt-5.2": (1_750_000, 175_000, None, 14_000_000),
    "gpt-5.4": (2_500_000, 250_000, None, 15_000_000),
    "gpt-5.4-mini": (750_000, 75_000, None, 4_500_000),
    "gpt-5.4-nano": (200_000, 20_000, None, 1_250_000),
    # OpenAI: GPT-4.1 and GPT-4o
    "gpt-4.1": (2_000_000, 500_000, None, 8_000_000),
    "gpt-4.1-mini": (400_000, 100_000, None, 1_600_000),
    "gpt-4.1-nano": (100_000, 25_000, None, 400_000),
    "gpt-4o": (2_500_000, 1_250_000, None, 10_000_000),
    "gpt-4o-2024-05-13": (5_000_000, None, None, 15_000_000),
    "gpt-4o-mini": (150_000, 75_000, None, 600_000),
    # OpenAI: reasoning models
    "o1": (15_000_000, 7_500_000, None, 60_000_000),
    "o3": (2_000_000, 500_000, None, 8_000_000),
    "o3-mini": (1_100_000, 550_000, None, 4_400_000),
    "o4-mini": (1_100_000, 275_000, None, 4_400_000),
    # OpenAI: embeddings and legacy
    "text-embedding-3-small": (20_000, None, None, 0),
    "text-embedding-3-large": (130_000, None, None, 0),
    "text-embedding-ada-002": (100_000, None, None, 0),
    "gpt-3.5-turbo": (500_000, None, None, 1_500_000),
    "gpt-3.5-turbo-instruct": (1_500_000, None, None, 2_000_000),
    # Anthropic: cache hits at 0.1x input, 5-minute cache writes at 1.25x input
    "claude-opus-5-5": (4_000_000, 200_000, 5_000_000, 20_000_000),
    "claude-opus-5": (5_000_000, 500_000, 6_250_000, 25_000_000),
    "claude-opus-4-8": (5_000_000, 500_000, 6_250_000, 25_000_000),
    "claude-opus-4-7": (5_000_000, 500_000, 6_250_000, 25_000_000),
    "claude-opus-4-6": (5_000_000, 500_000, 6_250_000, 25_000_000),
    "claude-opus-4-5": (5_000_000, 500_000, 6_250_000, 25_000_000),
    "claude-opus-4-1": (15_000_000, 1_500_000, 18_750_000, 75_000_000),
    "claude-opus-4": (15_000_000, 1_500_000, 18_750_000, 75_000_000),
    "claude-opus-4-0": (15_000_000, 1_500_000, 18_750_000, 75_000_000),
    "claude-sonnet-5": (2_000_000, 200_000, 2_500_000, 10_000_000),
    "claude-sonnet-4-6": (3_000_000, 300_000, 3_750_000, 15_000_000),
    "claude-sonnet-4-5": (3_000_000, 300_000, 3_750_000, 15_000_000),
    "claude-sonnet-4": (3_000_000, 300_000, 3_750_000, 15_000_000),
    "claude-sonnet-4-0": (3_000_000, 300_000, 3_750_000, 15_000_000),
    "claude-3-7-sonnet": (3_000_000, 300_000, 3_750_000, 15_000_000),
    "claude-3-5-sonnet": (3_000_000, 300_000, 3_750_000, 15_000_000),
    "claude-haiku-4-5": (1_000_000, 100_000, 1_250_000, 5_000_000),
    "claude-3-5-haiku": (800_000, 80_000, 1_000_000, 4_000_000),
    "claude-3-opus": (15_000_000, 1_500_000, 18_750_000, 75_000_000),
    "claude-3-haiku": (250_000, 30_000, 300_000, 1_250_000),
}

# A snapshot suffix: -YYYY-MM-DD (OpenAI), -YYYYMMDD (Anthropic), -MMDD (older OpenAI), -latest.
_SNAPSHOT_SUFFIX: Final = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")

# (input, cached input, cache write, output) in micro-dollars per million tokens
_Rates = tuple[int, int, int, int]
_FOUND_CACHE_SIZE: Final = 1024  # answers of price_for kept (one per tuple of model names asked about)


def base_model_name(model: str) -> str:
    """``model`` without its snapshot suffix (the name itself when it has none)."""
    return _SNAPSHOT_SUFFIX.sub("", model)


def _micros_per_million(usd_per_million: float) -> int:
    """A configured USD-per-million price in integer micro-dollars per million, rounded up."""
    if not math.isfinite(usd_per_million) or usd_per_million < 0:
        raise ConfigError(f"a price must be a finite number >= 0, not {usd_per_million!r}")
    return math.ceil(Decimal(repr(usd_per_million)) * MICROS_PER_USD)


def _price(rates: tuple[int, int | None, int | None, int]) -> Price:
    """The public ``Price`` (USD per million tokens) of a built-in table row."""
    input_, cached, write, output = rates
    return Price(
        input=input_ / MICROS_PER_USD,
        output=output / MICROS_PER_USD,
        cached_input=None if cached is None else cached / MICROS_PER_USD,
        cache_write=None if write is None else write / MICROS_PER_USD,
    )


class PriceTable:
    """Model prices: configured overrides over the built-in table, and the cost arithmetic on them."""

    def __init__(self, overrides: Mapping[str, Price]) -> None:
        self._overrides: dict[str, Price] = dict(overrides)
        self._builtin: dict[str, Price] = {model: _price(rates) for model, rates in _BUILTIN_PRICES.items()}
        # Integer rates per Price; filled for every known price now, and for any other Price on first use.
        self._rates: dict[Price, _Rates] = {}
        for price in (*self._overrides.values(), *self._builtin.values()):
            self._rates_of(price)
        # price_for answers per tuple of names (twice per request: a regex and four lookups each); the names are the
        # configured models and deployments, so the cache is small, but it is bounded all the same.
        self._found: dict[tuple[str, ...], Price | None] = {}

    def price_for(self, *model_names: str) -> Price | None:
        """The price of the first name that has one (overrides first, exact name before base name), else None."""
        try:
            return self._found[model_names]
        except KeyError:
            pass
        found = self._lookup(model_names)
        if len(self._found) >= _FOUND_CACHE_SIZE:
            self._found.clear()
        self._found[model_names] = found
        return found

    def _lookup(self, model_names: tuple[str, ...]) -> Price | None:
        for name in model_names:
            base = base_model_name(name)
            for table in (self._overrides, self._builtin):
                price = table.get(name) or table.get(base)
                if price is not None:
                    return price
        return None

    def cost_micros(self, price: Price, usage: Usage) -> int:
        """Cost of ``usage`` in micro-dollars, rounded up. ``usage.input_tokens`` includes the cached and the
        cache-write tokens: the rest of the input is charged at the input price, cached tokens at the cached-input
        price, cache writes at the cache-write price (both default to the input price), output at the output price.
        Negative counts are treated as zero."""
        input_rate, cached_rate, write_rate, output_rate = self._rates_of(price)
        cached = max(0, usage.cached_input_tokens)
        written = max(0, usage.cache_write_tokens)
        uncached = max(0, usage.input_tokens - cached - written)
        scaled = (
            uncached * input_rate
            + cached * cached_rate
            + written * write_rate
            + max(0, usage.output_tokens) * output_rate
        )
        return -(-scaled // TOKENS_PER_PRICE_UNIT)

    def estimate_micros(self, price: Price, input_tokens: int, output_tokens: int) -> int:
        """Upper-bound cost of a request before it runs: every input token at the full input price, rounded up."""
        input_rate, _cached, _write, output_rate = self._rates_of(price)
        scaled = max(0, input_tokens) * input_rate + max(0, output_tokens) * output_rate
        return -(-scaled // TOKENS_PER_PRICE_UNIT)

    def _rates_of(self, price: Price) -> _Rates:
        rates = self._rates.get(price)
        if rates is None:
            input_rate = _micros_per_million(price.input)
            rates = (
                input_rate,
                input_rate if price.cached_input is None else _micros_per_million(price.cached_input),
                input_rate if price.cache_write is None else _micros_per_million(price.cache_write),
                _micros_per_million(price.output),
            )
            self._rates[price] = rates
        return rates
