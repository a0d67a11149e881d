"""AWS errors become ORCA's kinds, with messages that say what ORCA was doing."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
)

from orca.aws import errors
from orca.aws.errors import (
    AuthError,
    AwsError,
    BadRequestError,
    CapacityError,
    ErrorKind,
    IdempotencyMismatchError,
    NotFoundError,
    QuotaError,
    ThrottledError,
    UnreachableError,
    aws_call,
    translate,
)


def client_error(code: str, message: str = "something", operation: str = "RunInstances") -> Any:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def test_insufficient_capacity_is_a_capacity_error_naming_what_was_launched() -> None:
    original = client_error(
        "InsufficientInstanceCapacity", "We currently do not have sufficient p5.48xlarge capacity"
    )

    with pytest.raises(CapacityError) as caught, aws_call("launching p5.48xlarge for ns/pod"):
        raise original

    assert str(caught.value) == (
        "launching p5.48xlarge for ns/pod: InsufficientInstanceCapacity: "
        "We currently do not have sufficient p5.48xlarge capacity"
    )
    assert caught.value.code == "InsufficientInstanceCapacity"
    assert caught.value.operation == "RunInstances"
    assert caught.value.kind is ErrorKind.CAPACITY
    assert caught.value.__cause__ is original


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("InsufficientInstanceCapacity", CapacityError),
        ("ReservationCapacityExceeded", CapacityError),
        ("InsufficientHostCapacity", CapacityError),
        ("SpotMaxPriceTooLow", CapacityError),
        ("UnfulfillableCapacity", CapacityError),
        ("VcpuLimitExceeded", QuotaError),
        ("InstanceLimitExceeded", QuotaError),
        ("MaxSpotInstanceCountExceeded", QuotaError),
        ("RequestLimitExceeded", ThrottledError),
        ("ThrottlingException", ThrottledError),
        ("TooManyRequestsException", ThrottledError),
        ("InvalidInstanceID.NotFound", NotFoundError),
        ("InvalidLaunchTemplateId.NotFound", NotFoundError),
        ("InvalidSubnetID.NotFound", NotFoundError),
        ("NoSuchKey", NotFoundError),
        ("AWS.SimpleQueueService.NonExistentQueue", NotFoundError),
        ("AuthFailure", AuthError),
        ("UnauthorizedOperation", AuthError),
        ("ExpiredToken", AuthError),
        ("InvalidClientTokenId", AuthError),
        ("AccessDenied", AuthError),
        ("SignatureDoesNotMatch", AuthError),
        ("InvalidParameterValue", BadRequestError),
        ("InvalidParameterCombination", BadRequestError),
        ("IdempotentParameterMismatch", IdempotencyMismatchError),
    ],
)
def test_each_code_maps_to_its_kind(code: str, cls: type[AwsError]) -> None:
    assert type(translate(client_error(code), "doing it")) is cls


def test_unsupported_in_a_zone_is_capacity_but_otherwise_a_bad_request() -> None:
    in_zone = client_error(
        "Unsupported",
        "Your requested instance type (p5.48xlarge) is not supported in your requested "
        "Availability Zone (us-east-1e).",
    )
    combination = client_error("Unsupported", "The requested configuration is not supported.")

    assert isinstance(translate(in_zone, "launching"), CapacityError)
    assert isinstance(translate(combination, "launching"), BadRequestError)


def test_unknown_code_is_a_plain_aws_error_keeping_the_code() -> None:
    error = translate(client_error("SomethingNew", "new failure"), "doing it")

    assert type(error) is AwsError
    assert error.kind is ErrorKind.OTHER
    assert str(error) == "doing it: SomethingNew: new failure"
    assert error.aws_message == "new failure"


def test_connection_failures_are_unreachable() -> None:
    refused = EndpointConnectionError(endpoint_url="https://ec2.us-east-1.amazonaws.com/")
    timeout = ConnectTimeoutError(endpoint_url="https://ec2.us-east-1.amazonaws.com/")

    assert isinstance(translate(refused, "listing instances"), UnreachableError)
    assert isinstance(translate(timeout, "listing instances"), UnreachableError)
    assert str(translate(refused, "listing instances")).startswith(
        "listing instances: AWS endpoint unreachable"
    )


def test_missing_credentials_are_an_auth_error_that_says_what_to_do() -> None:
    error = translate(NoCredentialsError(), "checking access to EC2")

    assert isinstance(error, AuthError)
    assert "role" in str(error)


def test_aws_call_leaves_other_exceptions_alone() -> None:
    with pytest.raises(ValueError, match="not AWS"), aws_call("doing it"):
        raise ValueError("not AWS")


def test_an_aws_error_passes_translate_unchanged() -> None:
    error = CapacityError("already translated", code="InsufficientInstanceCapacity")

    assert translate(error, "again") is error


def test_helpers_tell_kinds_apart() -> None:
    capacity = translate(client_error("InsufficientInstanceCapacity"), "x")
    quota = translate(client_error("VcpuLimitExceeded"), "x")
    throttled = translate(client_error("RequestLimitExceeded"), "x")
    gone = translate(client_error("InvalidInstanceID.NotFound"), "x")

    assert errors.is_capacity(capacity) and not errors.is_capacity(quota)
    assert errors.is_quota(quota)
    assert errors.is_unfulfillable(capacity) and errors.is_unfulfillable(quota)
    assert errors.is_throttled(throttled) and errors.is_temporary(throttled)
    assert errors.is_not_found(gone) and not errors.is_temporary(gone)
    assert errors.is_auth(translate(client_error("AuthFailure"), "x"))


def test_a_full_targeted_reservation_is_a_capacity_error() -> None:
    message = (
        "The requested reservation does not have sufficient compatible and available capacity "
        "for this request."
    )
    error = translate(client_error("ReservationCapacityExceeded", message), "launching p5")

    assert isinstance(error, CapacityError)
    assert str(error) == f"launching p5: ReservationCapacityExceeded: {message}"


def test_an_unknown_reservation_and_a_denied_one_are_told_apart_from_other_failures() -> None:
    unknown = translate(client_error("InvalidCapacityReservationId.NotFound"), "x")
    denied = translate(client_error("UnauthorizedOperation"), "x")
    expired = translate(client_error("ExpiredToken"), "x")
    other_gone = translate(client_error("InvalidSubnetID.NotFound"), "x")

    assert errors.is_reservation_not_found(unknown) and isinstance(unknown, NotFoundError)
    assert not errors.is_reservation_not_found(other_gone)
    assert errors.is_denied(denied) and isinstance(denied, AuthError)
    assert not errors.is_denied(expired) and errors.is_auth(expired)
    malformed = translate(client_error("InvalidCapacityReservationId.Malformed"), "x")
    assert isinstance(malformed, BadRequestError)
