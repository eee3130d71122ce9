"""The ``metrics`` section of the configuration: opt-in developer and repo labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from tollgate.errors import ConfigError
from tollgate.settings import MetricsSettings, load_settings


def load(tmp_path: Path, text: str) -> MetricsSettings:
    path = tmp_path / "tollgate.yaml"
    path.write_text(text)
    return load_settings(path, environ={}).metrics


def test_default_is_no_high_cardinality_labels(tmp_path: Path) -> None:
    assert load(tmp_path, "timezone: UTC\n") == MetricsSettings(developer_labels=False, repo_labels=False)


def test_opt_in(tmp_path: Path) -> None:
    assert load(tmp_path, "metrics: {developer_labels: true, repo_labels: true}\n") == MetricsSettings(True, True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metrics: {developer_labels: yes please}\n", "metrics.developer_labels"),
        ("metrics: {team_labels: true}\n", "team_labels"),
        ("metrics: [developer_labels]\n", "metrics"),
    ],
)
def test_faults(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert message in caught.value.message
