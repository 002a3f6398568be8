"""Settings: typed, validated once, one clear line naming the variable on a bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sender.config import load_settings
from sender.errors import SettingsError


def test_defaults_load() -> None:
    settings = load_settings()
    assert settings.batch_size == 5000
    assert settings.max_segments == 10
    assert settings.limiter == "local"


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("SENDER_PROVIDER_RATE", "-5", "SENDER_PROVIDER_RATE"),
        ("SENDER_PROVIDER_RATE", "fast", "SENDER_PROVIDER_RATE"),
        ("SENDER_MITTO_BASE_URL", "not a url", "SENDER_MITTO_BASE_URL"),
        ("SENDER_DATABASE_URL", "mysql://x", "SENDER_DATABASE_URL"),
        ("SENDER_REDIS_URL", "http://x", "SENDER_REDIS_URL"),
        ("SENDER_LIMITER", "global", "SENDER_LIMITER"),
        ("SENDER_BATCH_SIZE", "0", "SENDER_BATCH_SIZE"),
        ("SENDER_ADMIN_TOKEN", "  ", "SENDER_ADMIN_TOKEN"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDER_PROVIDER_RATE", "1000")
    monkeypatch.setenv("SENDER_LIMITER", "redis")
    settings = load_settings()
    assert settings.provider_rate == 1000.0
    assert settings.limiter == "redis"


def test_cli_prints_one_line_and_no_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sender.cli", "migrate"],
        env={"SENDER_PROVIDER_RATE": "-5", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sender: invalid SENDER_PROVIDER_RATE: Input should be greater than 0"
    ]
    assert "Traceback" not in result.stderr
