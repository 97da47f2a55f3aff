"""Settings from the environment: numbers out of range stop start-up with the variable's name,
and DATABASE_URL keeps its query parameters."""

import runpy

import pytest

import hotproject.settings


def settings_with(monkeypatch, **env: str) -> dict:
    """hotapp/settings.py as a process started with `env` would load it."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(hotproject.settings.__file__)


def test_the_defaults_load(monkeypatch):
    hot = settings_with(monkeypatch)["HOT"]

    assert hot["CLAIM_BATCH"] == 20 and hot["RUN_LEASE_SECONDS"] == 60.0


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("HOT_CLAIM_BATCH", "0", "HOT_CLAIM_BATCH must be at least 1, got 0"),
        ("HOT_CLAIM_BATCH", "-5", "HOT_CLAIM_BATCH must be at least 1, got -5"),
        ("HOT_CLAIM_BATCH", "100000", "HOT_CLAIM_BATCH must be at most 1000, got 100000"),
        ("HOT_RUN_LEASE_SECONDS", "0", "HOT_RUN_LEASE_SECONDS must be greater than 0, got 0.0"),
        ("HOT_SWEEP_INTERVAL_SECONDS", "-1", "HOT_SWEEP_INTERVAL_SECONDS must be greater than 0"),
        ("HOT_TASK_POLL_SECONDS", "0", "HOT_TASK_POLL_SECONDS must be greater than 0"),
        ("HOT_REQUEUE_AFTER_SECONDS", "-1", "HOT_REQUEUE_AFTER_SECONDS must be at least 0"),
        ("HOT_CANCEL_GRACE_SECONDS", "-1", "HOT_CANCEL_GRACE_SECONDS must be at least 0"),
        ("HOT_MAX_PAYLOAD_BYTES", "0", "HOT_MAX_PAYLOAD_BYTES must be at least 1"),
        ("HOT_MAX_RECOVERIES", "-1", "HOT_MAX_RECOVERIES must be at least 0"),
        ("HOT_TRACE_MAX_SPANS", "-1", "HOT_TRACE_MAX_SPANS must be at least 0"),
        ("HOT_TRACE_MAX_BYTES", "-1", "HOT_TRACE_MAX_BYTES must be at least 0"),
        ("HOT_TRACE_VALUE_CHARS", "2", "HOT_TRACE_VALUE_CHARS must be at least 10"),
        ("HOT_RETRY_MAX_ATTEMPTS", "-1", "HOT_RETRY_MAX_ATTEMPTS must be at least 0"),
        ("HOT_RETRY_MIN_DELAY_MS", "-1", "HOT_RETRY_MIN_DELAY_MS must be at least 0"),
        ("HOT_RETRY_MAX_DELAY_MS", "50", "HOT_RETRY_MAX_DELAY_MS must be at least 100"),
        ("HOT_DB_CONN_MAX_AGE", "-1", "HOT_DB_CONN_MAX_AGE must be at least 0"),
        ("HOT_CLAIM_BATCH", "twenty", "HOT_CLAIM_BATCH must be a whole number, got 'twenty'"),
    ],
)
def test_a_number_out_of_range_stops_start_up_naming_the_variable(
    monkeypatch, name, value, message
):
    with pytest.raises(ValueError, match=message):
        settings_with(monkeypatch, **{name: value})


def test_the_retry_delays_are_checked_against_each_other(monkeypatch):
    with pytest.raises(ValueError, match="HOT_RETRY_MAX_DELAY_MS must be at least 5000"):
        settings_with(monkeypatch, HOT_RETRY_MIN_DELAY_MS="5000", HOT_RETRY_MAX_DELAY_MS="1000")


def test_database_url_query_parameters_become_connection_options(monkeypatch):
    url = "postgres://hot:p%40ss@db.example:5433/hot?sslmode=require&connect_timeout=5"

    db = settings_with(monkeypatch, DATABASE_URL=url)["DATABASES"]["default"]

    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "hot",
        "hot",
        "p@ss",
        "db.example",
        "5433",
    )
    assert db["OPTIONS"] == {"sslmode": "require", "connect_timeout": "5"}


def test_a_database_url_without_a_query_has_no_options(monkeypatch):
    db = settings_with(monkeypatch, DATABASE_URL="postgres://localhost/hot")["DATABASES"]["default"]

    assert db["OPTIONS"] == {}
