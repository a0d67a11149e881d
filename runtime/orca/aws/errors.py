"""AWS errors by kind: the one place that knows AWS error codes.

The deciding code never looks at an AWS error code. It asks what *kind* of
failure happened, because the kind decides the reaction: another zone or a
fallback type for capacity, a message to the department for a quota, waiting
for throttling, adoption-or-forget for not-found, an alarm for auth. Codes are
grouped into named sets, as Karpenter's AWS provider does, and every botocore
exception is translated into one class of this tree::

    AwsError                       .code .operation .kind
     +-- CapacityError             no capacity for this type in this zone right now
     +-- QuotaError                an account limit (vCPU, spot count); needs a quota raise
     +-- ThrottledError            request rate above the account's limits
     +-- NotFoundError             the resource does not exist (or not yet: eventual consistency)
     +-- AuthError                 credentials missing, expired or not allowed
     +-- BadRequestError           the request itself is wrong; retrying will not help
     +-- IdempotencyMismatchError  a ClientToken reused with different parameters
     +-- UnreachableError          no answer from the endpoint (DNS, connect, read timeout)
     +-- ServerError               AWS failed internally (5xx); temporary

Codes of no known kind become a plain :class:`AwsError` with kind ``OTHER``.
:func:`aws_call` wraps a block of boto3 calls and re-raises whatever botocore
raises as one of these, chained ``from`` the original, with a message that says
what ORCA was doing: ``launching p5.48xlarge for ns/pod: InsufficientInstanceCapacity:
...``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)


class ErrorKind(enum.StrEnum):
    CAPACITY = "capacity"
    QUOTA = "quota"
    THROTTLED = "throttled"
    NOT_FOUND = "not-found"
    AUTH = "auth"
    BAD_REQUEST = "bad-request"
    IDEMPOTENCY = "idempotency"
    UNREACHABLE = "unreachable"
    SERVER = "server"
    OTHER = "other"


# No capacity for the asked type in the asked zone (or reservation) at this moment;
# another zone, a fallback type or waiting can help. A launch that targets a reservation or
# a reservation group which has no free matching slot (full, or reserving another type or
# zone) fails with ReservationCapacityExceeded: waiting for a slot to free helps.
CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacityOnHost",
        "InsufficientReservedInstanceCapacity",
        "InsufficientHostCapacity",
        "InsufficientFreeAddressesInSubnet",
        "ReservationCapacityExceeded",
        "SpotMaxPriceTooLow",
        "UnfulfillableCapacity",
    }
)

# Account-wide limits; waiting inside the hour rarely helps, a quota raise does.
# MaxSpotInstanceCountExceeded is the spot-instance count quota, hence here.
QUOTA_CODES = frozenset(
    {
        "VcpuLimitExceeded",
        "InstanceLimitExceeded",
        "MaxSpotInstanceCountExceeded",
    }
)

THROTTLED_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "SlowDown",
    }
)

NOT_FOUND_CODES = frozenset(
    {
        "InvalidInstanceID.NotFound",
        "InvalidLaunchTemplateId.NotFound",
        "InvalidLaunchTemplateName.NotFoundException",
        "InvalidSubnetID.NotFound",
        "InvalidVpcID.NotFound",
        "InvalidGroup.NotFound",
        "InvalidAMIID.NotFound",
        "InvalidCapacityReservationId.NotFound",
        "NoSuchKey",
        "NoSuchBucket",
        "NotFound",
        "404",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "ResourceNotFoundException",
        "ParameterNotFound",
    }
)

AUTH_CODES = frozenset(
    {
        "AuthFailure",
        "UnauthorizedOperation",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "AccessDenied",
        "AccessDeniedException",
        "SignatureDoesNotMatch",
        "OptInRequired",
    }
)

BAD_REQUEST_CODES = frozenset(
    {
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "InvalidParameter",
        "MissingParameter",
        "InvalidInstanceType",
        "InvalidUserData.Malformed",
        "InvalidBlockDeviceMapping",
        "InvalidCapacityReservationId.Malformed",
        "Unsupported",
        "UnsupportedOperation",
        "ValidationError",
        "ValidationException",
        "InvalidRequest",
        "InvalidArgument",
        "InvalidParameterValueException",
    }
)

IDEMPOTENCY_CODES = frozenset({"IdempotentParameterMismatch"})

# A launch named a capacity reservation that EC2 does not know in this account and region.
RESERVATION_NOT_FOUND_CODES = frozenset({"InvalidCapacityReservationId.NotFound"})

# The caller's IAM policy does not allow the request (as opposed to missing or expired
# credentials): for ORCA's runtime role, a resource outside the department's envelope.
DENIED_CODES = frozenset({"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"})

SERVER_CODES = frozenset(
    {"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable", "ServerInternal"}
)


class AwsError(Exception):
    """An AWS call failed; ``kind`` says how, ``code`` is AWS's own error code.

    ``aws_message`` is AWS's message alone, without ORCA's context; ``str()`` has both.
    """

    kind: ErrorKind = ErrorKind.OTHER

    def __init__(
        self,
        message: str,
        *,
        code: str,
        operation: str | None = None,
        aws_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation
        self.aws_message = message if aws_message is None else aws_message


class CapacityError(AwsError):
    kind = ErrorKind.CAPACITY


class QuotaError(AwsError):
    kind = ErrorKind.QUOTA


class ThrottledError(AwsError):
    kind = ErrorKind.THROTTLED


class NotFoundError(AwsError):
    kind = ErrorKind.NOT_FOUND


class AuthError(AwsError):
    kind = ErrorKind.AUTH


class BadRequestError(AwsError):
    kind = ErrorKind.BAD_REQUEST


class IdempotencyMismatchError(AwsError):
    kind = ErrorKind.IDEMPOTENCY


class UnreachableError(AwsError):
    kind = ErrorKind.UNREACHABLE


class ServerError(AwsError):
    kind = ErrorKind.SERVER


_BY_KIND: dict[ErrorKind, type[AwsError]] = {
    cls.kind: cls
    for cls in (
        CapacityError,
        QuotaError,
        ThrottledError,
        NotFoundError,
        AuthError,
        BadRequestError,
        IdempotencyMismatchError,
        UnreachableError,
        ServerError,
    )
}


def kind_of(code: str, message: str = "") -> ErrorKind:
    """The kind of an AWS error code.

    ``Unsupported`` is ambiguous: EC2 answers it both for "your requested instance
    type is not supported in your requested Availability Zone" (capacity: another
    zone helps) and for unsupported parameter combinations (a bad request).
    """
    if code == "Unsupported" and "availability zone" in message.lower():
        return ErrorKind.CAPACITY
    for kind, codes in (
        (ErrorKind.CAPACITY, CAPACITY_CODES),
        (ErrorKind.QUOTA, QUOTA_CODES),
        (ErrorKind.THROTTLED, THROTTLED_CODES),
        (ErrorKind.NOT_FOUND, NOT_FOUND_CODES),
        (ErrorKind.AUTH, AUTH_CODES),
        (ErrorKind.BAD_REQUEST, BAD_REQUEST_CODES),
        (ErrorKind.IDEMPOTENCY, IDEMPOTENCY_CODES),
        (ErrorKind.SERVER, SERVER_CODES),
    ):
        if code in codes:
            return kind
    return ErrorKind.OTHER


def make_error(
    kind: ErrorKind,
    message: str,
    *,
    code: str,
    operation: str | None = None,
    aws_message: str | None = None,
) -> AwsError:
    """An error of the class for ``kind``; the test fakes build their errors with this."""
    cls = _BY_KIND.get(kind, AwsError)
    return cls(message, code=code, operation=operation, aws_message=aws_message)


def error_for_code(
    code: str, message: str, *, context: str = "", operation: str | None = None
) -> AwsError:
    """The error AWS would cause for ``code``, worded as :func:`translate` words it."""
    text = f"{context}: {code}: {message}" if context else f"{code}: {message}"
    kind = kind_of(code, message)
    return make_error(kind, text, code=code, operation=operation, aws_message=message)


def translate(exc: Exception, context: str) -> AwsError:
    """The :class:`AwsError` for an exception raised by boto3/botocore.

    ``context`` says what ORCA was doing ("launching p5.48xlarge for ns/pod"); it
    starts the message. An :class:`AwsError` passes through unchanged.
    """
    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, ClientError):
        error: dict[str, Any] = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or "no message")
        return error_for_code(code, message, context=context, operation=exc.operation_name)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AuthError(
            f"{context}: no usable AWS credentials ({exc}); give the runtime a role "
            "(IRSA) or set AWS credentials in its environment",
            code=type(exc).__name__,
        )
    if isinstance(
        exc,
        EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError,
    ):
        return UnreachableError(
            f"{context}: AWS endpoint unreachable: {exc}", code=type(exc).__name__
        )
    if isinstance(exc, NoRegionError):
        return BadRequestError(f"{context}: {exc}; set the region", code="NoRegion")
    return AwsError(f"{context}: {type(exc).__name__}: {exc}", code=type(exc).__name__)


@contextmanager
def aws_call(context: str) -> Iterator[None]:
    """Re-raise botocore errors from the block as :class:`AwsError`, ``from`` the original."""
    try:
        yield
    except (ClientError, BotoCoreError) as e:
        raise translate(e, context) from e


def is_capacity(e: BaseException) -> bool:
    return isinstance(e, CapacityError)


def is_quota(e: BaseException) -> bool:
    return isinstance(e, QuotaError)


def is_unfulfillable(e: BaseException) -> bool:
    """Capacity or quota: this launch cannot happen as asked right now."""
    return isinstance(e, CapacityError | QuotaError)


def is_throttled(e: BaseException) -> bool:
    return isinstance(e, ThrottledError)


def is_not_found(e: BaseException) -> bool:
    return isinstance(e, NotFoundError)


def is_auth(e: BaseException) -> bool:
    return isinstance(e, AuthError)


def is_reservation_not_found(e: BaseException) -> bool:
    """The capacity reservation a launch named does not exist (for this account)."""
    return isinstance(e, NotFoundError) and e.code in RESERVATION_NOT_FOUND_CODES


def is_denied(e: BaseException) -> bool:
    """The IAM policy forbids the request; other credentials or another target could pass."""
    return isinstance(e, AuthError) and e.code in DENIED_CODES


def is_temporary(e: BaseException) -> bool:
    """Failures that may pass on their own: throttling, unreachable endpoint, AWS 5xx."""
    return isinstance(e, ThrottledError | UnreachableError | ServerError)
