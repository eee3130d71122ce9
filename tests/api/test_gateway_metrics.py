"""``GET /metrics`` on a real in-process gateway: scraped after requests through the official SDK."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.servers import running_gateway, wait_for

ALICE = "tg-alice-" + "a" * 40
BOB = "tg-bob-" + "b" * 42
ENVIRON = {"ALICE_KEY": ALICE, "BOB_KEY": BOB}
MESSAGES = [{"role": "user", "content": "Say hello to the gateway."}]
CONFIG = """
store: sqlite:///{tmp}/counters.db
providers:
  sim: {{type: simulated}}
models:
  - {{name: gpt-4o-mini, provider: sim}}
keys:
  - {{name: alice, key: env:ALICE_KEY, developer: alice, team: payments, env: dev}}
  - {{name: bob, key: env:BOB_KEY, developer: bob, team: search, env: ci, repo_from_header: true}}
budgets:
  - {{name: ci-tight, scope: team, match: {{env: ci}}, window: daily, limit: {{tokens: 10}}}}
{extra}
"""


def scrape(base_url: str) -> str:
    response = httpx.get(base_url + "/metrics")  # no key needed
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return response.text


def load(base_url: str) -> None:
    alice = openai.OpenAI(base_url=base_url + "/v1", api_key=ALICE, max_retries=0)
    alice.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)  # type: ignore[arg-type]
    for _chunk in alice.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
        pass
    bob = openai.OpenAI(
        base_url=base_url + "/v1", api_key=BOB, max_retries=0, default_headers={"x-tollgate-repo": "org/api"}
    )
    with pytest.raises(openai.RateLimitError):
        bob.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)  # type: ignore[arg-type]


def test_metrics_after_requests(tmp_path: Path) -> None:
    with running_gateway(tmp_path, CONFIG.format(tmp=tmp_path, extra=""), ENVIRON) as gw:
        assert scrape(gw.base_url) == "\n".join(
            [
                "# HELP tollgate_requests_total Requests finished, by caller, model and outcome.",
                "# TYPE tollgate_requests_total counter",
                "# HELP tollgate_tokens_total Tokens used, by kind (cached, cache_write: part of input).",
                "# TYPE tollgate_tokens_total counter",
                "# HELP tollgate_cost_usd_total Cost of the tokens used, in USD, at the configured prices.",
                "# TYPE tollgate_cost_usd_total counter",
                "# HELP tollgate_budget_rejections_total Requests refused with 429, by the budget.",
                "# TYPE tollgate_budget_rejections_total counter",
                "# HELP tollgate_upstream_latency_seconds Time from request to the end of the upstream answer.",
                "# TYPE tollgate_upstream_latency_seconds histogram",
                "# HELP tollgate_time_to_first_token_seconds Time from request to the first streamed token.",
                "# TYPE tollgate_time_to_first_token_seconds histogram",
                "# HELP tollgate_estimate_ratio Pre-dispatch token estimate divided by the tokens actually used.",
                "# TYPE tollgate_estimate_ratio histogram",
                "# HELP tollgate_store_seconds Budget counter store calls on the request path (reserve, settle, "
                "outbox), until the store answered.",
                "# TYPE tollgate_store_seconds histogram",
                "# HELP tollgate_store_errors_total Budget counter store calls that failed.",
                "# TYPE tollgate_store_errors_total counter",
                "",
            ]
        )
        load(gw.base_url)
        wait_for(lambda: len(gw.records) == 3)
        text = scrape(gw.base_url)
    tokens = sum(r.usage.input_tokens for r in gw.records)
    cost = sum(r.cost_micros for r in gw.records)
    assert tokens > 0 and cost > 0
    lines = text.splitlines()
    assert 'tollgate_requests_total{team="payments",env="dev",model="gpt-4o-mini",outcome="ok"} 2' in lines
    assert 'tollgate_requests_total{team="search",env="ci",model="gpt-4o-mini",outcome="rejected"} 1' in lines
    assert f'tollgate_tokens_total{{team="payments",env="dev",model="gpt-4o-mini",kind="input"}} {tokens}' in lines
    assert f'tollgate_cost_usd_total{{team="payments",env="dev",model="gpt-4o-mini"}} {cost / 1e6!r}' in lines
    assert 'tollgate_budget_rejections_total{budget="ci-tight"} 1' in lines
    assert 'tollgate_upstream_latency_seconds_count{model="gpt-4o-mini",provider="sim"} 2' in lines
    assert 'tollgate_time_to_first_token_seconds_count{model="gpt-4o-mini"} 1' in lines
    assert 'tollgate_estimate_ratio_count{model="gpt-4o-mini"} 2' in lines
    assert "developer=" not in text and "repo=" not in text
    # alice matches no budget: no reserve, one settle each (the outbox entry); bob is refused: reserve, then outbox.
    assert 'tollgate_store_seconds_count{operation="reserve"} 1' in lines
    assert 'tollgate_store_seconds_count{operation="settle"} 2' in lines
    assert 'tollgate_store_seconds_count{operation="outbox"} 1' in lines
    assert 'tollgate_store_seconds_bucket{operation="settle",le="+Inf"} 2' in lines
    assert "tollgate_store_errors_total{" not in text


def test_opted_in_labels(tmp_path: Path) -> None:
    config = CONFIG.format(tmp=tmp_path, extra="metrics: {developer_labels: true, repo_labels: true}")
    with running_gateway(tmp_path, config, ENVIRON) as gw:
        load(gw.base_url)
        wait_for(lambda: len(gw.records) == 3)
        lines = scrape(gw.base_url).splitlines()
    assert (
        'tollgate_requests_total{team="payments",env="dev",model="gpt-4o-mini",developer="alice",repo="",'
        'outcome="ok"} 2' in lines
    )
    assert (
        'tollgate_requests_total{team="search",env="ci",model="gpt-4o-mini",developer="bob",repo="org/api",'
        'outcome="rejected"} 1' in lines
    )
