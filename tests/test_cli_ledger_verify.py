"""``tollgate ledger verify`` after mixed load through a real in-process gateway, then with a tampered counter."""

from __future__ import annotations

import io
import sqlite3
import time
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import openai
import orjson
import pytest
import redis

from tests.servers import RunningGateway, running_gateway, wait_for
from tollgate import cli_ledger
from tollgate.budgets.model import CounterKey
from tollgate.budgets.windows import window_at
from tollgate.cli import main
from tollgate.settings import load_settings
from tollgate.stores.redis_counters import CounterKeys

ALICE = "tg-alice-" + "a" * 40
BOB = "tg-bob-" + "b" * 42
ENVIRON = {"ALICE_KEY": ALICE, "BOB_KEY": BOB}
MESSAGES = [{"role": "user", "content": "Say hello to the gateway."}]

CONFIG = """
store: {store}
ledger: sqlite:///{tmp}/ledger.db
providers:
  sim: {{type: simulated}}
models:
  - {{name: gpt-4o-mini, provider: sim}}
  - {{name: broken, provider: sim, upstream_model: "gpt-4o-mini+sim-status-500"}}
  - {{name: cut, provider: sim, upstream_model: "gpt-4o-mini+sim-disconnect-after-3"}}
  - {{name: dribble, provider: sim, upstream_model: "gpt-4o-mini+sim-chunk-delay-200"}}
prices:
  broken: {{input: 0.15, output: 0.6}}
  cut: {{input: 0.15, output: 0.6}}
  dribble: {{input: 0.15, output: 0.6}}
keys:
  - {{name: alice, key: env:ALICE_KEY, developer: alice, team: payments, env: dev}}
  - {{name: bob, key: env:BOB_KEY, developer: bob, team: payments, env: dev}}
budgets:
  - {{name: dev-daily, scope: developer, match: {{env: dev}}, window: daily, limit: {{tokens: 1000000}}}}
  - {{name: team-monthly, scope: team, window: monthly, limit: {{usd: 100}}}}
  - {{name: per-model, scope: model, window: weekly, limit: {{tokens: 1000000}}, enforce: soft}}
  - {{name: bob-tight, scope: key, match: {{developer: bob}}, window: daily, limit: {{tokens: 120}}}}
"""


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path}/counters.db"


@pytest.fixture
def gw(tmp_path: Path, store_url: str) -> Iterator[RunningGateway]:
    config = CONFIG.format(tmp=tmp_path, store=store_url)
    (tmp_path / "tollgate.yaml").write_text(config)
    with running_gateway(tmp_path, config, ENVIRON) as running:
        yield running


def mixed_load(gw: RunningGateway) -> int:
    """Successes, streams, an upstream 500, an upstream cut, a client disconnect and budget rejections; returns
    how many requests were made."""
    alice = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=ALICE, max_retries=0)
    bob = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=BOB, max_retries=0)
    made = 0
    for _ in range(3):
        alice.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)  # type: ignore[arg-type]
        made += 1
    for _ in range(2):
        for _chunk in alice.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
            pass
        made += 1
    with pytest.raises(openai.InternalServerError):
        alice.chat.completions.create(model="broken", messages=MESSAGES, max_tokens=5)  # type: ignore[arg-type]
    made += 1
    with pytest.raises(openai.APIError):
        for _chunk in alice.chat.completions.create(model="cut", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
            pass
    made += 1
    stream = alice.chat.completions.create(model="dribble", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    next(iter(stream))
    stream.close()  # the client goes away mid-stream
    made += 1
    rejected = 0
    while rejected < 2:  # bob's tight budget admits a request or two, then refuses
        try:
            bob.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)  # type: ignore[arg-type]
        except openai.RateLimitError:
            rejected += 1
        made += 1
    return made


def run_verify(gw: RunningGateway) -> tuple[int, dict[str, object], str]:
    settings = gw.gateway.settings
    out, err = io.StringIO(), io.StringIO()
    code = cli_ledger.verify(settings, as_json=True, out=out, err=err)
    assert err.getvalue() == ""
    table = io.StringIO()
    cli_ledger.verify(settings, as_json=False, out=table)
    return code, orjson.loads(out.getvalue()), table.getvalue()


def tamper(gw: RunningGateway, store_url: str, tokens: int) -> None:
    """Add ``tokens`` to alice's dev-daily counter behind the gateway's back."""
    settings = gw.gateway.settings
    start = window_at("daily", time.time(), zoneinfo.ZoneInfo(settings.timezone)).start
    if store_url.startswith("redis"):
        client = redis.Redis.from_url(store_url)
        try:
            client.hincrby(CounterKeys().counter(CounterKey("dev-daily", "alice", start)), "ut", tokens)
        finally:
            client.close()
        return
    with sqlite3.connect(store_url.removeprefix("sqlite:///")) as db:
        db.execute(
            "UPDATE budget_counters SET used_tokens = used_tokens + ? WHERE budget = ? AND scope_value = ? "
            "AND window_start = ?",
            (tokens, "dev-daily", "alice", start),
        )
    db.close()


def test_verify_agrees_after_mixed_load_then_reports_a_tampered_counter(gw: RunningGateway, store_url: str) -> None:
    made = mixed_load(gw)
    wait_for(lambda: len(gw.records) == made)
    outcomes = sorted({record.outcome for record in gw.records})
    assert outcomes == ["client_disconnect", "ok", "rejected", "upstream_error"]

    code, report, table = run_verify(gw)
    assert (code, report["ok"], report["differences"]) == (0, True, 0), table
    counters = {(c["budget"], c["scope_value"]): c for c in report["counters"]}  # type: ignore[attr-defined]
    assert sorted(counters) == [
        ("bob-tight", "bob"),
        ("dev-daily", "alice"),
        ("dev-daily", "bob"),
        ("per-model", "broken"),
        ("per-model", "cut"),
        ("per-model", "dribble"),
        ("per-model", "gpt-4o-mini"),
        ("team-monthly", "payments"),
    ]
    alice_tokens = sum(r.usage.total_tokens for r in gw.records if r.key_name == "alice")
    assert alice_tokens > 0
    assert counters[("dev-daily", "alice")]["ledger"]["tokens"] == alice_tokens  # type: ignore[index]
    assert counters[("dev-daily", "alice")]["reserved"] == {"tokens": 0, "cost_micros": 0}
    assert table.splitlines()[-1] == "all counters agree"

    tamper(gw, store_url, 7)
    code, report, table = run_verify(gw)
    assert (code, report["ok"], report["differences"]) == (1, False, 1)
    differing = [c for c in report["counters"] if not c["agrees"]]  # type: ignore[attr-defined]
    assert [(c["budget"], c["scope_value"]) for c in differing] == [("dev-daily", "alice")]
    assert differing[0]["counter"]["tokens"] == alice_tokens + 7
    assert differing[0]["ledger"]["tokens"] == alice_tokens
    assert table.splitlines()[-1] == "1 of 8 counters differ from the ledger"
    assert [line.split()[:3] + line.split()[-1:] for line in table.splitlines() if "DIFFERS" in line] == [
        ["dev-daily", "developer", "alice", "DIFFERS"]
    ]


def test_cli_exit_status_and_empty_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "tollgate.yaml"
    config.write_text(
        f"store: sqlite:///{tmp_path}/c.db\nledger: sqlite:///{tmp_path}/l.db\n"
        "providers: {p: {type: simulated}}\nmodels: [{name: m, provider: p, upstream_model: gpt-4o-mini}]\n"
        "budgets: [{name: all, scope: global, window: daily, limit: {tokens: 10}}]\n"
    )
    assert main(["ledger", "verify", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "no counters in the current windows: nothing to verify\n"
    assert main(["ledger", "verify", "--config", str(config), "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == {"ok": True, "differences": 0, "counters": []}


def test_an_unreachable_store_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "tollgate.yaml"
    config.write_text(
        f"store: redis://127.0.0.1:1/0\nledger: sqlite:///{tmp_path}/l.db\n"
        "budgets: [{name: all, scope: global, window: daily, limit: {tokens: 10}}]\n"
    )
    out, err = io.StringIO(), io.StringIO()
    assert cli_ledger.verify(load_settings(config, environ={}), as_json=False, out=out, err=err) == 1
    assert (out.getvalue(), err.getvalue().startswith("tollgate: ")) == ("", True)
