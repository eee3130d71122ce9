"""The command line: a bad config exits 2 naming file and field; secrets never printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tollgate.settings import hash_key

EXAMPLE = Path(__file__).parent.parent / "examples" / "tollgate.yaml"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tollgate.cli", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_serve_with_bad_config_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("budgets:\n  - {name: b, scope: team, window: hourly, limit: {tokens: 1}}\n")
    result = run("serve", "--config", str(bad), "--port", "1")
    assert result.returncode == 2
    assert f"{bad}: budgets[0].window: must be one of daily, weekly, monthly" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("workers", ["0", "-1", "two"])
def test_serve_with_workers_below_1_is_a_usage_error(workers: str) -> None:
    result = run("serve", "--config", str(EXAMPLE), "--port", "1", "--workers", workers)
    assert result.returncode == 2
    assert "argument --workers:" in result.stderr


def test_serve_refuses_unpriced_model_under_usd_budget(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "providers: {p: {type: simulated}}\nmodels: [{name: m, provider: p, upstream_model: house-model}]\n"
        "budgets: [{name: b, scope: team, window: monthly, limit: {usd: 5}}]\n"
    )
    result = run("serve", "--config", str(bad), "--port", "1")
    assert result.returncode == 2
    assert "'m' (served as 'house-model') has no price" in result.stderr


def test_secret_values_never_printed(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("keys: [{name: a, key: env:K}]\n")
    result = run("config", "check", "--config", str(config), env={"K": "sk-not-a-gateway-key-secret"})
    assert result.returncode == 2
    assert "sk-not-a-gateway-key-secret" not in result.stderr + result.stdout


def test_config_check_accepts_the_example() -> None:
    result = run("config", "check", "--config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "ok (1 providers, 3 models, 2 keys, 3 budgets)" in result.stdout


def test_keys_generate_prints_key_and_matching_hash() -> None:
    result = run("keys", "generate")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    key = lines[0].split()[-1]
    assert key.startswith("tg-") and len(key) == 46
    assert lines[1].endswith(f'"sha256:{hash_key(key)}"')
