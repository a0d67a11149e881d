"""Settings: validated once; a bad value names the key and the reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orca.cli import main
from orca.settings import SettingsError, load_settings

GOOD = {
    "ORCA_DEPARTMENT": "biology",
    "ORCA_CLUSTER_NAME": "campus",
    "ORCA_REGION": "us-east-1",
    "ORCA_SUBNET_IDS": '["subnet-0a1b2c3d"]',
    "ORCA_SECURITY_GROUP_IDS": '["sg-0a1b2c3d4e5f60718"]',
    "ORCA_LAUNCH_TEMPLATES": '{"x86_64": "lt-0123456789abcdef1"}',
    "ORCA_STATUS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/orca-biology",
    "ORCA_BUNDLE_BUCKET": "orca-biology-bundles",
    "ORCA_LOG_GROUP": "/orca/biology",
}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key, value in GOOD.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_settings_come_from_orca_variables(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("ORCA_LIMITS__GPUS", "16")

    settings = load_settings()

    assert settings.node_name == "orca-biology"
    assert settings.limits.gpus == 16
    assert settings.subnet_ids == ["subnet-0a1b2c3d"]


def test_bad_values_name_each_variable_and_reason(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("ORCA_DEPARTMENT", "Biology Dept")
    environment.setenv("ORCA_SUBNET_IDS", '["sn-123"]')
    environment.setenv("ORCA_LIMITS__GPUS", "-1")

    with pytest.raises(SettingsError) as caught:
        load_settings()

    message = str(caught.value)
    assert "ORCA_DEPARTMENT: Value error, must be 1-40 lowercase letters" in message
    assert "'Biology Dept'" in message
    assert "ORCA_SUBNET_IDS: Value error, not subnet ids: sn-123" in message
    assert "ORCA_LIMITS__GPUS:" in message


def test_a_lifetime_ceiling_longer_than_the_budgets_months_allow_is_refused(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("ORCA_MAX_LIFETIME_CEILING", "P28D")
    assert load_settings().max_lifetime_ceiling.days == 28
    environment.setenv("ORCA_MAX_LIFETIME_CEILING", "P29D")

    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert "ORCA_MAX_LIFETIME_CEILING: Value error, must be at most 28 days (P28D)" in str(
        caught.value
    )


def test_a_missing_setting_points_at_the_stack_and_a_duration_is_shown_as_written(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.delenv("ORCA_BUNDLE_BUCKET")
    environment.setenv("ORCA_RUNTIME_LEASE", "PT1M")

    with pytest.raises(SettingsError) as caught:
        load_settings()

    lines = str(caught.value).splitlines()
    assert "  ORCA_BUNDLE_BUCKET: Field required" in lines
    assert (
        "  ORCA_RUNTIME_LEASE: Input should be greater than or equal to 5 minutes (got 'PT1M')"
        in lines
    )
    assert "`pulumi stack output runtimeSettings`" in lines[-1]


def test_settings_file_is_read_and_the_environment_wins(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings_file = tmp_path / "orca.yaml"
    settings_file.write_text("department: chemistry\nworkers: 3\n")
    environment.delenv("ORCA_DEPARTMENT")
    environment.setenv("ORCA_SETTINGS_FILE", str(settings_file))
    environment.setenv("ORCA_WORKERS", "5")

    settings = load_settings()

    assert settings.department == "chemistry"
    assert settings.workers == 5


def test_missing_settings_file_is_named(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("ORCA_SETTINGS_FILE", "/nonexistent/orca.yaml")

    with pytest.raises(SettingsError, match=re.escape("ORCA_SETTINGS_FILE=/nonexistent/orca.yaml")):
        load_settings()


def test_unknown_launch_template_kind_is_refused(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("ORCA_LAUNCH_TEMPLATES", '{"gpu": "lt-0123456789abcdef1"}')

    with pytest.raises(SettingsError, match="unknown kind"):
        load_settings()


def test_reservation_group_arn_is_optional_and_read_when_set(
    environment: pytest.MonkeyPatch,
) -> None:
    assert load_settings().capacity_reservation_group_arn is None
    arn = "arn:aws:resource-groups:us-east-1:123456789012:group/orca-physics-pool"
    environment.setenv("ORCA_CAPACITY_RESERVATION_GROUP_ARN", arn)

    assert load_settings().capacity_reservation_group_arn == arn


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("orca-physics-pool", "not an AWS Resource Groups group ARN"),
        (
            "arn:aws:ec2:us-east-1:123456789012:capacity-reservation/cr-0123456789abcdef0",
            "not an AWS Resource Groups group ARN",
        ),
        ("arn:aws:resource-groups:us-east-1:1234:group/pool", "not an AWS Resource Groups"),
        (
            "arn:aws:resource-groups:eu-west-1:123456789012:group/pool",
            "the group is in eu-west-1, not in the runtime's us-east-1",
        ),
    ],
)
def test_bad_reservation_group_arn_stops_the_runtime_naming_the_key(
    environment: pytest.MonkeyPatch, value: str, reason: str
) -> None:
    environment.setenv("ORCA_CAPACITY_RESERVATION_GROUP_ARN", value)

    with pytest.raises(SettingsError) as caught:
        load_settings()

    message = str(caught.value)
    assert f"ORCA_CAPACITY_RESERVATION_GROUP_ARN: Value error, {reason}" in message
    assert repr(value) in message


def test_the_budget_comes_from_orca_budget_variables(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("ORCA_BUDGET__LEDGER_TABLE", "orca-biology-ledger")
    environment.setenv("ORCA_BUDGET__MONTHLY_USD", "5000")
    environment.setenv("ORCA_BUDGET__NAMESPACE_SHARES", '{"genomics": 40}')
    environment.setenv("ORCA_BUDGET__OVER_LIMIT", "stop")

    budget = load_settings().budget

    assert budget is not None
    assert budget.namespace_limit_usd("genomics") == 2000
    assert budget.namespace_limit_usd("imaging") is None
    assert (budget.when_refused, budget.over_limit) == ("wait", "stop")
    assert budget.hard_ceiling_usd == 5500


def test_bad_budget_values_name_each_variable_and_reason(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("ORCA_BUDGET__LEDGER_TABLE", "orca ledger")
    environment.setenv("ORCA_BUDGET__MONTHLY_USD", "0")
    environment.setenv("ORCA_BUDGET__NAMESPACE_SHARES", '{"genomics": 140}')
    environment.setenv("ORCA_BUDGET__WHEN_REFUSED", "queue")

    with pytest.raises(SettingsError) as caught:
        load_settings()

    message = str(caught.value)
    assert "ORCA_BUDGET__LEDGER_TABLE: String should match pattern" in message
    assert "ORCA_BUDGET__MONTHLY_USD: Input should be greater than 0" in message
    assert "ORCA_BUDGET__NAMESPACE_SHARES: Value error, shares are percentages" in message
    assert "genomics=140" in message
    assert "ORCA_BUDGET__WHEN_REFUSED: Input should be 'wait' or 'fail'" in message


def test_orca_run_refuses_to_start_without_a_budget(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run"]) == 2

    said = capsys.readouterr().err
    assert "cannot start without a budget" in said
    assert "ORCA_BUDGET__LEDGER_TABLE" in said and "ORCA_BUDGET__MONTHLY_USD" in said
