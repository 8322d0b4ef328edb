"""Settings: one frozen object from the environment, errors that name the field."""

from __future__ import annotations

import pydantic
import pytest

from stream.settings import Settings, load_settings, to_env


def test_nested_sections_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDSTREAM_KAFKA__BOOTSTRAP_SERVERS", "10.0.0.1:9092")
    monkeypatch.setenv("FRAUDSTREAM_SERVICES__REDIS_PORT", "6400")
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "10.0.0.1:9092"
    assert settings.services.redis_port == 6400


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(pydantic.ValidationError):
        settings.kafka.partitions = 9  # type: ignore[misc]


def test_a_bad_port_is_rejected_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDSTREAM_API__PORT", "70000")
    with pytest.raises(pydantic.ValidationError, match=r"api\.port"):
        load_settings()


def test_to_env_reproduces_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Settings(model={"signing_key": "s3cret", "snapshot_every_labels": 7})
    for name, value in to_env(original).items():
        monkeypatch.setenv(name, value)
    assert load_settings() == original


def test_the_signing_key_never_shows_in_the_settings_repr() -> None:
    settings = Settings(model={"signing_key": "s3cret"})
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)


@pytest.mark.parametrize("token", ["", "short-secret"])
def test_an_empty_or_short_admin_token_is_refused_without_being_shown(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    """An empty token let an empty bearer promote; the error names the setting, not the
    value (a refused secret must not reach a log)."""
    monkeypatch.setenv("FRAUDSTREAM_API__ADMIN_TOKEN", token)
    with pytest.raises(pydantic.ValidationError, match=r"api\.admin_token") as refused:
        load_settings()
    assert "at least 16 characters" in str(refused.value)
    assert "short-secret" not in str(refused.value) and "input_value" not in str(refused.value)
    monkeypatch.setenv("FRAUDSTREAM_API__ADMIN_TOKEN", "0123456789abcdef")
    token_setting = load_settings().api.admin_token
    assert token_setting is not None and token_setting.get_secret_value() == "0123456789abcdef"


def test_drift_features_must_be_known_and_kswin_must_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDSTREAM_DRIFT__KSWIN_FEATURES", '["txn_amount_log", "card_colour"]')
    with pytest.raises(
        pydantic.ValidationError,
        match=r"(?s)drift\.kswin_features.*unknown feature\(s\) card_colour",
    ):
        load_settings()
    monkeypatch.setenv("FRAUDSTREAM_DRIFT__KSWIN_FEATURES", '["txn_amount_log"]')
    monkeypatch.setenv("FRAUDSTREAM_DRIFT__KSWIN_WINDOW", "300")
    monkeypatch.setenv("FRAUDSTREAM_DRIFT__KSWIN_STAT_SIZE", "200")
    with pytest.raises(pydantic.ValidationError, match=r"kswin_stat_size \(200\) must be at most"):
        load_settings()
    monkeypatch.setenv("FRAUDSTREAM_DRIFT__KSWIN_STAT_SIZE", "150")
    assert load_settings().drift.kswin_features == ("txn_amount_log",)
