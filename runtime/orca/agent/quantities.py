"""Kubernetes resource quantities ("192", "500m", "1024Gi", "1e9") as Docker wants them.

Kubernetes writes CPU in cores or millicores and memory with binary (Ki, Mi, Gi...)
or decimal (k, M, G...) suffixes or an exponent. Docker's ``--cpus`` takes a
decimal number of CPUs and ``--memory`` a byte count, so both are converted
exactly, with :class:`~decimal.Decimal`, never through floats.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIXES = {
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(
    r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
)


def parse_quantity(value: str | int | float) -> Decimal:
    """The quantity as a plain number (cores for CPU, bytes for memory, a count otherwise)."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 2, 500m, 16Gi, 1e9)")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as e:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 2, 500m, 16Gi)") from e
    return number * _SUFFIXES[match.group(2) or ""]


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
