"""The exact RunInstances parameters ORCA sends for a launch request."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from orca.aws.ec2 import instance_from_api, run_instances_params
from orca.aws.model import LaunchRequest, Market, ReservationChoice

GROUP_ARN = "arn:aws:resource-groups:us-east-1:123456789012:group/orca-physics-pool"


def params(reservation: ReservationChoice, market: Market = "on-demand") -> dict[str, Any]:
    request = LaunchRequest(
        instance_type="p5.48xlarge",
        subnet_id="subnet-0a1b2c3d",
        launch_template_id="lt-0123456789abcdef0",
        client_token="orca-1-abc",
        user_data="#!/bin/sh\n",
        tags={"orca.research/department": "physics"},
        market=market,
        reservation=reservation,
    )
    return run_instances_params(request)


def test_open_leaves_the_specification_to_ec2_default() -> None:
    assert "CapacityReservationSpecification" not in params(ReservationChoice())


def test_none_asks_ec2_to_avoid_reservations() -> None:
    assert params(ReservationChoice("none"))["CapacityReservationSpecification"] == {
        "CapacityReservationPreference": "none"
    }


def test_group_launches_only_into_the_group() -> None:
    assert params(ReservationChoice.group(GROUP_ARN))["CapacityReservationSpecification"] == {
        "CapacityReservationPreference": "capacity-reservations-only",
        "CapacityReservationTarget": {"CapacityReservationResourceGroupArn": GROUP_ARN},
    }


def test_a_reservation_id_launches_only_into_that_reservation() -> None:
    reservation = ReservationChoice.reservation("cr-0123456789abcdef0")

    assert params(reservation)["CapacityReservationSpecification"] == {
        "CapacityReservationPreference": "capacity-reservations-only",
        "CapacityReservationTarget": {"CapacityReservationId": "cr-0123456789abcdef0"},
    }


def test_spot_never_names_reservations_and_refuses_a_target() -> None:
    spot = params(ReservationChoice("none"), market="spot")

    assert "CapacityReservationSpecification" not in spot
    assert spot["InstanceMarketOptions"]["MarketType"] == "spot"
    with pytest.raises(ValueError, match="only on-demand"):
        params(ReservationChoice.group(GROUP_ARN), market="spot")


def test_a_targeted_choice_names_exactly_one_target() -> None:
    with pytest.raises(ValueError):
        ReservationChoice("targeted")
    with pytest.raises(ValueError):
        ReservationChoice("targeted", reservation_id="cr-0123456789abcdef0", group_arn=GROUP_ARN)
    with pytest.raises(ValueError):
        ReservationChoice("none", group_arn=GROUP_ARN)


def test_an_instance_in_a_reservation_says_which() -> None:
    raw = {
        "InstanceId": "i-0123456789abcdef0",
        "InstanceType": "p5.48xlarge",
        "State": {"Name": "pending"},
        "Placement": {"AvailabilityZone": "us-east-1a"},
        "CapacityReservationId": "cr-0123456789abcdef0",
    }

    assert instance_from_api(raw).capacity_reservation_id == "cr-0123456789abcdef0"
    assert instance_from_api({**raw, "CapacityReservationId": ""}).capacity_reservation_id is None


def test_a_terminated_instance_ended_when_its_transition_reason_says() -> None:
    raw = {
        "InstanceId": "i-0123456789abcdef0",
        "InstanceType": "m7i.large",
        "State": {"Name": "terminated"},
        "LaunchTime": datetime(2026, 12, 4, 18, 0, tzinfo=UTC),
        "StateTransitionReason": "User initiated (2026-12-04 19:27:36 GMT)",
    }

    assert instance_from_api(raw).ended_at == datetime(2026, 12, 4, 19, 27, 36, tzinfo=UTC)
    assert instance_from_api({**raw, "StateTransitionReason": ""}).ended_at is None
    assert instance_from_api({**raw, "State": {"Name": "running"}}).ended_at is None
