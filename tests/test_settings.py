"""Settings: from arguments, from ``DATAGRAPH_*`` variables, and which one wins."""

from __future__ import annotations

import dataclasses

import pytest

from datagraph import ConfigurationError, MemoryStore, Settings, Supervisor


def test_the_defaults() -> None:
    settings = Settings()
    assert settings.redis_url is None
    assert settings.prefix == "dg"
    assert settings.batch_size == 1024
    assert settings.window == 16384
    assert settings.client_log_level == "off"


def test_from_arguments() -> None:
    settings = Settings(batch_size=8, retention=60, redis_url="redis://h:1/0")
    assert (settings.batch_size, settings.retention) == (8, 60)
    assert settings.redis_url == "redis://h:1/0"


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().batch_size = 2  # type: ignore[misc]


def test_from_env_reads_each_variable_as_its_fields_type() -> None:
    settings = Settings.from_env(
        {
            "DATAGRAPH_REDIS_URL": "redis://h:6380/1",
            "DATAGRAPH_RETENTION": "3600",
            "DATAGRAPH_BATCH_SIZE": "16",
            "DATAGRAPH_WINDOW": "0",
            "DATAGRAPH_PICKLE_SECRET": "s3cret",
            "DATAGRAPH_CLIENT_LOG_LEVEL": "debug",
            "OTHER_BATCH_SIZE": "3",  # not ours
        }
    )
    assert settings.redis_url == "redis://h:6380/1"
    assert settings.retention == 3600.0
    assert isinstance(settings.retention, float)
    assert settings.batch_size == 16
    assert settings.window == 0  # backpressure off
    assert settings.pickle_secret == "s3cret"
    assert settings.client_log_level == "debug"


def test_from_env_reads_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATAGRAPH_SHARE_SIZE", "7")
    monkeypatch.setenv("DATAGRAPH_PREFIX", "")  # empty: the default
    settings = Settings.from_env()
    assert settings.share_size == 7
    assert settings.prefix == "dg"


def test_overrides_win_over_the_environment_and_none_does_not() -> None:
    environ = {"DATAGRAPH_BATCH_SIZE": "16", "DATAGRAPH_PREFIX": "env"}
    settings = Settings.from_env(environ, batch_size=32, prefix=None)
    assert settings.batch_size == 32
    assert settings.prefix == "env"  # None means "not given"


def test_a_supervisor_takes_settings_as_keywords(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATAGRAPH_BATCH_SIZE", "16")
    supervisor = Supervisor(store=MemoryStore(), window=5)
    assert supervisor.settings.batch_size == 16
    assert supervisor.settings.window == 5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATAGRAPH_BATCH_SIZE", "many"),
        ("DATAGRAPH_RETENTION", "a week"),
        ("DATAGRAPH_LEASE", "1e"),
    ],
)
def test_a_variable_of_the_wrong_kind_names_itself(variable: str, value: str) -> None:
    with pytest.raises(
        ConfigurationError, match=f"{variable}='{value}' is not a valid"
    ) as info:
        Settings.from_env({variable: value})
    assert info.value.__cause__ is None  # one line, not int()'s own message too


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("batch_size", 0, "batch_size must be an integer >= 1, got 0"),
        ("share_size", 1.5, "share_size must be an integer >= 1"),
        ("window", -1, "window must be an integer >= 0"),
        ("takeovers", -1, "takeovers must be an integer >= 0"),
        ("max_value_size", 0, "max_value_size must be an integer >= 1"),
        ("retention", 0, "retention must be a positive number, got 0"),
        ("lease", -5.0, "lease must be a positive number"),
        ("read_timeout", "1", "read_timeout must be a positive number, got '1'"),
        ("client_log_level", "loud", "client_log_level must be one of off, error"),
    ],
)
def test_a_bad_value_is_refused(field: str, value: object, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        Settings(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=says):  # the same through from_env
        Settings.from_env({}, **{field: value})


def test_a_bad_variable_is_refused_like_a_bad_argument() -> None:
    with pytest.raises(
        ConfigurationError, match="window must be an integer >= 0, got -3"
    ):
        Settings.from_env({"DATAGRAPH_WINDOW": "-3"})


def test_an_unknown_override_is_a_configuration_error_naming_the_known_ones() -> None:
    with pytest.raises(
        ConfigurationError, match=r"unknown setting\(s\) \['batchsize'\]"
    ) as info:
        Settings.from_env({}, batchsize=8)
    assert "'batch_size'" in str(info.value)  # the known settings are listed
    with pytest.raises(ConfigurationError, match="batchsize"):
        Supervisor(store=MemoryStore(), batchsize=8)


def test_an_unknown_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="batchsize"):
        Settings(batchsize=8)  # type: ignore[call-arg]


def test_store_options_are_the_redis_stores_keywords() -> None:
    settings = Settings(prefix="p", retention=9, store_timeout=3, command_timeout=1)
    assert settings.store_options() == {
        "prefix": "p",
        "retention": 9,
        "store_timeout": 3,
        "command_timeout": 1,
        "max_value_size": 128 * 1024 * 1024,
        "client_log_level": "off",
    }
