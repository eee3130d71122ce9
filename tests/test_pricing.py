"""tollgate.pricing: lookup rules, overrides, integer cost arithmetic with cache pricing and rounding up."""

from __future__ import annotations

import pytest

from tollgate.errors import ConfigError
from tollgate.pricing import PriceTable, base_model_name
from tollgate.settings import Price
from tollgate.types import Usage

TABLE = PriceTable({})


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
        ("gpt-4.1", "gpt-4.1"),
        ("claude-opus-4-1", "claude-opus-4-1"),
        ("o4-mini", "o4-mini"),
    ],
)
def test_base_model_name(model: str, base: str) -> None:
    assert base_model_name(model) == base


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("gpt-4o", Price(input=2.5, output=10.0, cached_input=1.25)),
        ("gpt-4o-mini-2024-07-18", Price(input=0.15, output=0.6, cached_input=0.075)),
        ("gpt-4o-2024-05-13", Price(input=5.0, output=15.0)),  # an exact snapshot entry beats its base name
        ("gpt-4.1-nano", Price(input=0.1, output=0.4, cached_input=0.025)),
        ("gpt-5-mini-2025-08-07", Price(input=0.25, output=2.0, cached_input=0.025)),
        ("o4-mini", Price(input=1.1, output=4.4, cached_input=0.275)),
        ("text-embedding-3-small", Price(input=0.02, output=0.0)),
        ("claude-haiku-4-5-20251001", Price(input=1.0, output=5.0, cached_input=0.1, cache_write=1.25)),
        ("claude-3-5-haiku-20241022", Price(input=0.8, output=4.0, cached_input=0.08, cache_write=1.0)),
        ("claude-sonnet-4-20250514", Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)),
        ("claude-opus-4-1-20250805", Price(input=15.0, output=75.0, cached_input=1.5, cache_write=18.75)),
        ("claude-opus-4-5-20251101", Price(input=5.0, output=25.0, cached_input=0.5, cache_write=6.25)),
        ("claude-3-7-sonnet-latest", Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)),
    ],
)
def test_builtin_prices(model: str, price: Price) -> None:
    assert TABLE.price_for(model) == price


def test_unknown_model_has_no_price() -> None:
    assert TABLE.price_for("my-local-llama") is None
    assert TABLE.price_for() is None
    assert TABLE.price_for("gpt-4o-mini-turbo") is None  # only snapshot suffixes are stripped


def test_first_name_with_a_price_wins() -> None:
    # an alias the table does not know, then the upstream model it routes to
    assert TABLE.price_for("fast", "gpt-4o-mini") == Price(input=0.15, output=0.6, cached_input=0.075)
    assert TABLE.price_for("gpt-4o", "gpt-4o-mini") == Price(input=2.5, output=10.0, cached_input=1.25)


def test_overrides_beat_the_builtin_table() -> None:
    cheap = Price(input=1.0, output=2.0)
    alias = Price(input=0.5, output=0.5)
    table = PriceTable({"gpt-4o": cheap, "fast": alias})
    assert table.price_for("gpt-4o") == cheap
    assert table.price_for("gpt-4o-2024-08-06") == cheap  # an override's base name covers its snapshots
    assert table.price_for("gpt-4o-2024-05-13") == cheap  # ... even one with its own built-in entry
    assert table.price_for("fast", "gpt-4o") == alias
    assert table.price_for("gpt-4o-mini") == Price(input=0.15, output=0.6, cached_input=0.075)


def test_cost_without_cache() -> None:
    price = TABLE.price_for("gpt-4o-mini")
    assert price is not None
    # 1,000 x $0.15/M + 500 x $0.60/M = $0.00015 + $0.0003
    assert TABLE.cost_micros(price, Usage(input_tokens=1000, output_tokens=500)) == 450
    assert TABLE.cost_micros(price, Usage()) == 0


def test_cost_rounds_up_once_per_request() -> None:
    price = TABLE.price_for("gpt-4o-mini")
    assert price is not None
    assert TABLE.cost_micros(price, Usage(input_tokens=1)) == 1  # 0.15 micro-dollars
    assert TABLE.cost_micros(price, Usage(input_tokens=7, output_tokens=1)) == 2  # 1.05 + 0.6 = 1.65
    assert TABLE.cost_micros(price, Usage(input_tokens=20)) == 3  # 3.0 exactly: no float drift upwards


def test_cost_is_exact_integer_arithmetic() -> None:
    table = PriceTable({"m": Price(input=0.1, output=0.3)})
    price = table.price_for("m")
    assert price is not None
    assert table.cost_micros(price, Usage(input_tokens=10, output_tokens=10)) == 4  # 1 + 3, not 4.000000000000001
    opus = TABLE.price_for("claude-opus-4-1")
    assert opus is not None
    assert TABLE.cost_micros(opus, Usage(output_tokens=1_000_000_000)) == 75_000_000_000  # $75,000


def test_anthropic_cache_reads_and_writes() -> None:
    price = TABLE.price_for("claude-sonnet-4-5")
    assert price is not None
    usage = Usage(input_tokens=10_000, cached_input_tokens=6_000, cache_write_tokens=2_000, output_tokens=1_000)
    # 2,000 x $3 + 6,000 x $0.30 + 2,000 x $3.75 + 1,000 x $15 (per million) = 6,000 + 1,800 + 7,500 + 15,000
    assert TABLE.cost_micros(price, usage) == 30_300


def test_openai_cached_input() -> None:
    price = TABLE.price_for("gpt-4.1")
    assert price is not None
    # 500 x $2 + 1,500 x $0.50 (per million)
    assert TABLE.cost_micros(price, Usage(input_tokens=2_000, cached_input_tokens=1_500)) == 1_750


def test_missing_cache_rates_default_to_the_input_price() -> None:
    table = PriceTable({"m": Price(input=1.0, output=2.0)})
    price = table.price_for("m")
    assert price is not None
    usage = Usage(input_tokens=1_000, cached_input_tokens=400, cache_write_tokens=100, output_tokens=10)
    assert table.cost_micros(price, usage) == 1_000 + 20


def test_reasoning_tokens_are_charged_once_as_output() -> None:
    price = TABLE.price_for("o4-mini")
    assert price is not None
    assert TABLE.cost_micros(price, Usage(output_tokens=1_000, reasoning_tokens=800)) == 4_400


def test_inconsistent_or_negative_counts_are_not_charged_below_zero() -> None:
    price = TABLE.price_for("claude-haiku-4-5")
    assert price is not None
    # cached + written exceed the input: nothing left at the input price; each part still charged
    usage = Usage(input_tokens=100, cached_input_tokens=1_000, cache_write_tokens=1_000)
    assert TABLE.cost_micros(price, usage) == 100 + 1_250
    assert TABLE.cost_micros(price, Usage(input_tokens=-5, output_tokens=-5, cached_input_tokens=-1)) == 0


def test_a_price_not_from_the_table_is_costed_too() -> None:
    assert TABLE.cost_micros(Price(input=0.000001, output=0.0), Usage(input_tokens=5)) == 1  # rate rounded up to 1


def test_estimate_micros_charges_every_input_token_at_the_input_price() -> None:
    price = TABLE.price_for("gpt-4o")
    assert price is not None
    assert TABLE.estimate_micros(price, 1_000, 1_000) == 2_500 + 10_000
    assert TABLE.estimate_micros(price, 1, 0) == 3  # 2.5 rounded up
    assert TABLE.estimate_micros(price, -1, -1) == 0


def test_non_finite_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        PriceTable({"m": Price(input=float("inf"), output=1.0)})


ANTHROPIC_STANDARD_CACHE = [
    "claude-opus-5",
    "claude-opus-4-8",
    "claude-opus-4-7",
    "claude-opus-4-6",
    "claude-opus-4-5",
    "claude-opus-4-1",
    "claude-opus-4",
    "claude-opus-4-0",
    "claude-sonnet-5",
    "claude-sonnet-4-6",
    "claude-sonnet-4-5",
    "claude-sonnet-4",
    "claude-sonnet-4-0",
    "claude-3-7-sonnet",
    "claude-3-5-sonnet",
    "claude-haiku-4-5",
    "claude-3-5-haiku",
    "claude-3-opus",
]


@pytest.mark.parametrize("model", ANTHROPIC_STANDARD_CACHE)
def test_anthropic_rows_follow_the_published_multipliers(model: str) -> None:
    """5-minute cache writes cost 1.25x the input price and cache hits 0.1x (a typo guard on the table)."""
    price = TABLE.price_for(model)
    assert price is not None and price.cached_input is not None and price.cache_write is not None
    assert price.cache_write == pytest.approx(price.input * 1.25)
    assert price.cached_input == pytest.approx(price.input * 0.1)
