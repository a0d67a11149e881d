"""Kubernetes resource quantities ("192", "500m", "1024Gi", "1e9") as Docker wants them.

Kubernetes writes CPU in cores or millicores and memory with binary (Ki, Mi, Gi...)
or decimal (k, M, G...) suffixes or an exponent. Docker's ``--cpus`` takes a
decimal number of CPUs and ``--memory`` a byte count; the official client's
parser reads the quantities exactly, as :class:`~decimal.Decimal`.
"""

from __future__ import annotations

from decimal import Decimal

from kubernetes.utils.quantity import parse_quantity as kubernetes_quantity


def parse_quantity(value: str | int | float) -> Decimal:
    """The quantity as a plain number (cores for CPU, bytes for memory, a count otherwise)."""
    try:
        return Decimal(kubernetes_quantity(str(value).strip()))
    except (ValueError, ArithmeticError) as e:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 2, 500m, 16Gi)") from e


def docker_cpus(value: str | int | float, host_cpus: int | None = None) -> str:
    """``--cpus`` for a CPU quantity: ``"192"`` -> ``"192"``, ``"500m"`` -> ``"0.5"``.

    With ``host_cpus``, a larger limit is lowered to it (Docker refuses more).
    """
    cores = parse_quantity(value)
    if cores <= 0:
        raise ValueError(f"cpu limit {value!r} must be positive")
    if host_cpus is not None:
        cores = min(cores, Decimal(host_cpus))
    text = format(cores.normalize(), "f")
    return text


def docker_bytes(value: str | int | float) -> str:
    """A memory quantity in bytes, rounded up as the kubelet does."""
    amount = parse_quantity(value)
    if amount <= 0:
        raise ValueError(f"memory quantity {value!r} must be positive")
    return str(int(amount.to_integral_value(rounding="ROUND_CEILING")))


def count(value: str | int | float) -> int:
    """An extended resource such as ``nvidia.com/gpu``: a whole number."""
    amount = parse_quantity(value)
    if amount != amount.to_integral_value() or amount < 0:
        raise ValueError(f"{value!r} must be a whole, non-negative number")
    return int(amount)
