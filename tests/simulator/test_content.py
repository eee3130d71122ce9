"""The reply and token rules that docs/simulator.md promises."""

from __future__ import annotations

from typing import Any

import pytest

from tollgate.simulator.behaviour import Behaviour
from tollgate.simulator.content import plan_reply, prompt_chars, tokens_for_chars


@pytest.mark.parametrize(
    ("value", "chars"),
    [
        ("hello there", 11),
        (["ab", "cde"], 5),
        ([{"role": "user", "content": "hello there"}], 11),
        ([{"role": "user", "content": [{"type": "text", "text": "abc"}, {"type": "image_url", "image_url": "x"}]}], 3),
        (
            [
                {"role": "user", "content": [{"type": "input_text", "text": "abcd"}]},
                {"role": "assistant", "content": "e"},
            ],
            5,
        ),
        ([{"type": "text", "text": "system prompt"}], 13),
        (None, 0),
        ([1, 2, 3], 0),
    ],
)
def test_prompt_chars(value: Any, chars: int) -> None:
    assert prompt_chars(value) == chars


@pytest.mark.parametrize(("chars", "tokens"), [(0, 1), (1, 1), (4, 1), (5, 2), (11, 3), (400, 100)])
def test_tokens_are_a_quarter_of_the_characters_rounded_up_at_least_one(chars: int, tokens: int) -> None:
    assert tokens_for_chars(chars) == tokens


def test_default_reply_is_sixteen_words() -> None:
    reply = plan_reply({}, 11, Behaviour())
    assert reply.text == (
        "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa"
    )
    assert (reply.output_tokens, reply.input_tokens, reply.truncated) == (16, 3, False)


@pytest.mark.parametrize(
    ("body", "words", "truncated"),
    [
        ({"max_tokens": 5}, 5, True),
        ({"max_completion_tokens": 3}, 3, True),
        ({"max_output_tokens": 2}, 2, True),
        ({"max_tokens": 16}, 16, False),
        ({"max_tokens": 100}, 16, False),
        ({"max_tokens": 0}, 0, True),
        ({"max_tokens": True}, 16, False),
    ],
)
def test_the_request_limit_cuts_the_reply(body: dict[str, Any], words: int, truncated: bool) -> None:
    reply = plan_reply(body, 1, Behaviour())
    assert (len(reply.words), reply.truncated) == (words, truncated)


def test_longer_replies_cycle_the_words() -> None:
    reply = plan_reply({"max_tokens": 18}, 1, Behaviour(reply_words=18))
    assert reply.words[15:] == ("papa", "alpha", "bravo")
    assert reply.chunks()[:3] == ["alpha", " bravo", " charlie"]
    assert "".join(reply.chunks()) == reply.text


def test_cached_cache_write_and_reasoning_tokens_come_on_top() -> None:
    reply = plan_reply({"max_tokens": 4}, 8, Behaviour(cached_tokens=100, cache_write_tokens=7, reasoning_tokens=9))
    assert (reply.prompt_tokens, reply.input_tokens) == (2, 109)
    assert reply.output_tokens == 13
