"""Settings come from IRIS_* variables (and AWS_REGION), keyword arguments win, and a bad
value is refused with the field's name."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from iris_exec.settings import Backend, InvalidSettings, Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("IRIS_") or name.upper() == "AWS_REGION":
            monkeypatch.delenv(name)


def test_defaults_are_the_contracts_without_any_variable() -> None:
    settings = Settings()
    assert settings.backend is Backend.LOCAL
    assert settings.max_code_bytes == 100 * 1024
    assert settings.rate_limit_per_minute == 100
    assert settings.aws_region == "us-east-1"
    assert settings.database_url is None


def test_variables_are_read_and_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRIS_BACKEND", "aws")
    monkeypatch.setenv("IRIS_EXECUTION_TIMEOUT_S", "12.5")
    monkeypatch.setenv("iris_max_sandboxes_per_project", "3")  # any case, as before
    monkeypatch.setenv("IRIS_DATA_DIR", "/tmp/somewhere")
    monkeypatch.setenv("IRIS_DATABASE_URL", "postgresql://u:secret@h/db")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("IRIS_NOT_A_SETTING", "ignored")
    settings = Settings()
    assert settings.backend is Backend.AWS
    assert settings.execution_timeout_s == 12.5
    assert settings.max_sandboxes_per_project == 3
    assert settings.data_dir == Path("/tmp/somewhere")
    assert settings.aws_region == "eu-west-1"
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == "postgresql://u:secret@h/db"
    assert "u:secret@h" not in repr(settings)


def test_keyword_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRIS_PORT", "9000")
    assert Settings().port == 9000
    assert Settings(port=9100).port == 9100


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "IRIS_PORT",
            "eighty",
            "IRIS_PORT='eighty' is not valid; it must be an integer from 0 to 65535",
        ),
        (
            "IRIS_PORT",
            "70000",
            "IRIS_PORT='70000' is not valid; it must be an integer from 0 to 65535",
        ),
        (
            "IRIS_BACKEND",
            "gcp",
            "IRIS_BACKEND='gcp' is not valid; it must be one of 'local', 'aws'",
        ),
        (
            "IRIS_EXECUTION_TIMEOUT_S",
            "0",
            "IRIS_EXECUTION_TIMEOUT_S='0' is not valid; it must be a number above 0",
        ),
    ],
)
def test_a_bad_value_is_refused_in_one_line_with_what_it_accepts(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidSettings) as raised:
        Settings()
    assert str(raised.value) == message


def test_every_bad_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRIS_PORT", "-1")
    monkeypatch.setenv("IRIS_SANDBOX_CPUS", "none")
    with pytest.raises(InvalidSettings) as raised:
        Settings()
    assert str(raised.value).splitlines() == [
        "IRIS_PORT='-1' is not valid; it must be an integer from 0 to 65535",
        "IRIS_SANDBOX_CPUS='none' is not valid; it must be a number above 0",
    ]


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


def test_every_setting_is_documented() -> None:
    """docs/configuration.md names every variable a setting is read from."""
    from iris_exec.settings import ALIASES, PREFIX

    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    missing = [
        ALIASES.get(name, PREFIX + name.upper())
        for name in Settings.model_fields
        if f"`{ALIASES.get(name, PREFIX + name.upper())}`" not in docs
    ]
    assert missing == []
