"""Configuration loading: every fault names the file, the field and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollgate.errors import ConfigError
from tollgate.settings import Secret, hash_key, load_settings

GOOD_KEY = "tg-" + "a" * 43


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tollgate.yaml"
    path.write_text(text)
    return path


BASE = """
providers:
  openai: {type: openai, base_url: https://api.openai.com/v1, api_key: env:OPENAI_API_KEY}
models:
  - {name: gpt-4o-mini, provider: openai}
  - {name: fast, provider: openai, upstream_model: gpt-4o-mini}
"""


def test_example_config_loads() -> None:
    settings = load_settings(Path(__file__).parent.parent / "examples" / "tollgate.yaml", environ={})
    assert [m.name for m in settings.models] == ["demo-gpt", "demo-claude", "demo-embed"]
    assert settings.providers["demo"].type == "simulated"
    assert [b.name for b in settings.budgets] == ["dev-daily", "ci-repo-daily", "team-monthly"]
    assert settings.budgets[2].limit.usd_micros == 5_000_000_000


def test_secret_by_env_reference_and_hidden_in_repr(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, BASE), environ={"OPENAI_API_KEY": "sk-live-123"})
    api_key = settings.providers["openai"].api_key
    assert api_key is not None and api_key.reveal() == "sk-live-123"
    assert "sk-live-123" not in repr(settings)
    assert repr(Secret("x")) == "Secret('********')"


def test_alias_maps_to_upstream_model(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, BASE), environ={"OPENAI_API_KEY": "k"})
    fast = settings.models[1]
    assert fast.deployments[0].upstream_model == "gpt-4o-mini"
    assert fast.deployments[0].provider == "openai"


def test_keys_from_env_and_sha256(tmp_path: Path) -> None:
    text = (
        BASE
        + f"""
keys:
  - {{name: alice, key: env:ALICE_KEY, developer: alice, team: payments, env: dev, models: [fast]}}
  - {{name: bob, key: "sha256:{hash_key(GOOD_KEY)}", team: search, expires: 2027-01-01, revoked: true}}
"""
    )
    settings = load_settings(write(tmp_path, text), environ={"OPENAI_API_KEY": "k", "ALICE_KEY": "tg-" + "b" * 43})
    alice, bob = settings.keys
    assert alice.key_hash == hash_key("tg-" + "b" * 43)
    assert alice.models == ("fast",)
    assert bob.key_hash == hash_key(GOOD_KEY)
    assert bob.revoked is True
    assert bob.expires_at is not None and bob.expires_at.isoformat() == "2027-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("extra", "environ", "message"),
    [
        ("timezone: Mars/Olympus\n", {}, "timezone: unknown time zone 'Mars/Olympus'"),
        ("store: mysql://x\n", {}, "store: must be a URL with scheme sqlite or redis or rediss"),
        ("bogus: 1\n", {}, "bogus: unknown field"),
        ("keys:\n  - {name: a, key: env:NOPE}\n", {}, "keys[0].key: environment variable NOPE is not set"),
        ("keys:\n  - {name: a, key: env:K}\n", {"K": "sk-short"}, "keys[0].key: a virtual key must start with tg-"),
        ("keys:\n  - {name: a, key: plain-text}\n", {}, "keys[0].key: a secret must be a reference"),
        ("keys:\n  - {name: a, key: 'sha256:abc'}\n", {}, "keys[0].key: a sha256: key must be 64 lowercase hex digits"),
        (
            "keys:\n  - {name: a, key: env:K, models: [nope]}\n",
            {"K": GOOD_KEY},
            "keys[0].models[0]: no model named 'nope' under models",
        ),
        (
            "budgets:\n  - {name: b, scope: planet, window: daily, limit: {tokens: 1}}\n",
            {},
            "budgets[0].scope: must be one of global, team, developer, repo, env, key, model",
        ),
        (
            "budgets:\n  - {name: b, scope: team, window: hourly, limit: {tokens: 1}}\n",
            {},
            "budgets[0].window: must be one of daily, weekly, monthly",
        ),
        (
            "budgets:\n  - {name: b, scope: team, window: daily, limit: {}}\n",
            {},
            "budgets[0].limit: must give tokens, usd or both",
        ),
        (
            "budgets:\n  - {name: b, scope: team, window: daily, limit: {tokens: -5}}\n",
            {},
            "budgets[0].limit.tokens: must be a whole number >= 0",
        ),
        (
            "budgets:\n  - {name: b, scope: team, window: daily, limit: {tokens: 1}, enforce: maybe}\n",
            {},
            "budgets[0].enforce: must be one of hard, soft, shadow",
        ),
    ],
)
def test_invalid_config_names_file_field_and_fault(
    tmp_path: Path, extra: str, environ: dict[str, str], message: str
) -> None:
    path = write(tmp_path, BASE + extra)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={"OPENAI_API_KEY": "k", **environ})
    assert info.value.message.startswith(f"{path}: ")
    assert message in info.value.message


def test_model_with_unknown_provider(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - {name: m, provider: nobody}\n")
    with pytest.raises(ConfigError, match=r"models\[0\]\.provider: no provider named 'nobody'"):
        load_settings(path, environ={})


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match=r"not valid YAML \(line 2\)"):
        load_settings(write(tmp_path, "a: 1\n b: [\n"))


def test_secret_never_in_error_message(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "keys:\n  - {name: a, key: env:K}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={"OPENAI_API_KEY": "k", "K": "sk-proj-very-secret"})
    assert "sk-proj-very-secret" not in info.value.message
