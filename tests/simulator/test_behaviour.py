"""The ``sim-`` directive grammar, as plain unit tests."""

from __future__ import annotations

import pytest

from tollgate.simulator.behaviour import Behaviour, parse_behaviour

DEFAULT = Behaviour()


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o-mini", DEFAULT),
        ("claude-haiku-4-5", DEFAULT),
        ("sim-status-500", Behaviour(status=500)),
        ("gpt-4o-mini+sim-status-429", Behaviour(status=429)),
        ("gpt-4o-mini+sim-latency-200", Behaviour(latency_ms=200.0)),
        ("gpt-4o-mini+sim-latency-2.5", Behaviour(latency_ms=2.5)),
        ("gpt-4o-mini+sim-chunk-delay-20", Behaviour(chunk_delay_ms=20.0)),
        ("gpt-4o-mini+sim-disconnect-after-3", Behaviour(disconnect_after=3)),
        ("gpt-4o-mini+sim-disconnect-after-0", Behaviour(disconnect_after=0)),
        ("gpt-4o-mini+sim-cached-100", Behaviour(cached_tokens=100)),
        ("gpt-4o-mini+sim-cache-write-7", Behaviour(cache_write_tokens=7)),
        ("gpt-4o-mini+sim-reasoning-12", Behaviour(reasoning_tokens=12)),
        ("gpt-4o-mini+sim-words-500", Behaviour(reply_words=500)),
        (
            "gpt-4o-mini+sim-latency-50+sim-chunk-delay-5",
            Behaviour(latency_ms=50.0, chunk_delay_ms=5.0),
        ),
        ("sim-latency-1+gpt-4o-mini+sim-latency-2", Behaviour(latency_ms=2.0)),  # left to right: the last wins
    ],
)
def test_directives_in_the_model_name(model: str, expected: Behaviour) -> None:
    assert parse_behaviour(model, DEFAULT) == expected


def test_directives_override_the_default_field_by_field() -> None:
    default = Behaviour(latency_ms=10.0, chunk_delay_ms=3.0, reply_words=4)
    assert parse_behaviour("m+sim-latency-0", default) == Behaviour(latency_ms=0.0, chunk_delay_ms=3.0, reply_words=4)
    assert parse_behaviour("m", default) is default


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("gpt-4o-mini+sim-explode-1", "unknown simulator directive 'sim-explode-1'"),
        ("gpt-4o-mini+sim-latency", "unknown simulator directive 'sim-latency'"),
        ("gpt-4o-mini+sim-latency-abc", "unknown simulator directive 'sim-latency-abc'"),
        ("sim-model", "unknown simulator directive 'sim-model'"),
        ("m+sim-status-200", "bad simulator directive 'sim-status-200': sim-status must be 400-599, not 200"),
        ("m+sim-cached-1.5", "bad simulator directive 'sim-cached-1.5'"),
    ],
)
def test_bad_directives_are_value_errors(model: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_behaviour(model, DEFAULT)
    assert str(info.value).startswith(message)


def test_sim_inside_a_part_is_not_a_directive() -> None:
    assert parse_behaviour("my-sim-model", DEFAULT) is DEFAULT
