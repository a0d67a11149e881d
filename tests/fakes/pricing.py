"""Stateful stand-ins for the two boto3 clients behind :class:`orca.pricing.Prices`.

:class:`FakePriceList` is a ``pricing`` client: it holds Linux on-demand prices per
(region, type) and answers ``get_products`` pages with Price List documents (JSON
strings) shaped as AWS's, filtered as AWS filters them. :class:`FakeSpotHistory` is the
part of an ``ec2`` client that ``describe_spot_price_history`` needs, holding dated
prices per (type, zone). Both record their calls in ``calls`` and fail on demand with
:meth:`fail` (any exception: a botocore ``ClientError``, ``EndpointConnectionError``).
"""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError


def client_error(code: str, operation: str, message: str = "failing on purpose") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def price_list_document(
    instance_type: str,
    region: str,
    usd_per_hour: Decimal | str,
    *,
    capacity_status: str = "Used",
    unit: str = "Hrs",
) -> str:
    """One Price List (aws_v1) product document for a Linux on-demand instance."""
    sku = f"SKU{zlib.crc32(f'{instance_type}/{region}/{capacity_status}'.encode()):010d}"
    rate = f"{sku}.JRTCKXETXF.6YS6EN2CT7"
    return json.dumps(
        {
            "product": {
                "productFamily": "Compute Instance",
                "sku": sku,
                "attributes": {
                    "instanceType": instance_type,
                    "regionCode": region,
                    "operatingSystem": "Linux",
                    "tenancy": "Shared",
                    "preInstalledSw": "NA",
                    "capacitystatus": capacity_status,
                    "licenseModel": "No License required",
                    "operation": "RunInstances",
                },
            },
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    f"{sku}.JRTCKXETXF": {
                        "offerTermCode": "JRTCKXETXF",
                        "priceDimensions": {
                            rate: {
                                "rateCode": rate,
                                "unit": unit,
                                "pricePerUnit": {"USD": f"{Decimal(str(usd_per_hour)):.10f}"},
                            }
                        },
                    }
                }
            },
        }
    )


class _Failing:
    def __init__(self) -> None:
        self._failures: list[tuple[Exception, int | None]] = []
        self._lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []

    def fail(self, error: Exception, times: int | None = None) -> None:
        """Raise ``error`` on the next ``times`` calls (None: until :meth:`recover`)."""
        with self._lock:
            self._failures.append((error, times))

    def recover(self) -> None:
        with self._lock:
            self._failures.clear()

    def _record(self, request: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append(request)
            if not self._failures:
                return
            error, times = self._failures[0]
            if times is not None:
                self._failures[0] = (error, times - 1)
                if times <= 1:
                    self._failures.pop(0)
        raise error


class _Paginator:
    def __init__(self, pages: Any) -> None:
        self._pages = pages

    def paginate(self, **request: Any) -> Iterator[dict[str, Any]]:
        return iter(self._pages(request))


class FakePriceList(_Failing):
    """A ``pricing`` client holding Linux on-demand prices per (region, type)."""

    def __init__(self, page_size: int = 1) -> None:
        super().__init__()
        self.documents: dict[tuple[str, str], list[str]] = {}
        self._page_size = page_size

    def set_price(self, instance_type: str, region: str, usd_per_hour: Decimal | str) -> None:
        # Besides the product instances are billed as, AWS lists the reservation ones.
        self.documents[(region, instance_type)] = [
            price_list_document(instance_type, region, usd_per_hour),
            price_list_document(
                instance_type, region, usd_per_hour, capacity_status="UnusedCapacityReservation"
            ),
        ]

    def get_paginator(self, operation: str) -> _Paginator:
        assert operation == "get_products"
        return _Paginator(self._pages)

    def asked_types(self) -> list[str]:
        return [_term(call, "instanceType") for call in self.calls]

    def _pages(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        self._record(request)
        assert request["ServiceCode"] == "AmazonEC2"
        region, instance_type = _term(request, "regionCode"), _term(request, "instanceType")
        status = _term(request, "capacitystatus")
        matching = [
            d
            for d in self.documents.get((region, instance_type), [])
            if json.loads(d)["product"]["attributes"]["capacitystatus"] == status
        ]
        size = self._page_size
        chunks = [matching[i : i + size] for i in range(0, len(matching), size)] or [[]]
        return [{"FormatVersion": "aws_v1", "PriceList": chunk} for chunk in chunks]


def _term(request: dict[str, Any], field: str) -> str:
    return str(next(f["Value"] for f in request["Filters"] if f["Field"] == field))


class FakeSpotHistory(_Failing):
    """The ``describe_spot_price_history`` part of an ``ec2`` client."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[dict[str, Any]] = []

    def set_price(
        self, instance_type: str, zone: str, usd_per_hour: Decimal | str, at: datetime
    ) -> None:
        self.history.append(
            {
                "InstanceType": instance_type,
                "AvailabilityZone": zone,
                "ProductDescription": "Linux/UNIX",
                "SpotPrice": str(usd_per_hour),
                "Timestamp": at,
            }
        )

    def get_paginator(self, operation: str) -> _Paginator:
        assert operation == "describe_spot_price_history"
        return _Paginator(self._pages)

    def _pages(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        self._record(request)
        start: datetime = request["StartTime"]
        end: datetime | None = request.get("EndTime")
        wanted = set(request["InstanceTypes"])
        zones = {
            zone
            for f in request.get("Filters", [])
            if f["Name"] == "availability-zone"
            for zone in f["Values"]
        }
        assert request["ProductDescriptions"] == ["Linux/UNIX"]

        # As EC2: the price in effect at the start time and each change after it (to the end).
        entries = []
        for key in {(e["InstanceType"], e["AvailabilityZone"]) for e in self.history}:
            if key[0] not in wanted or (zones and key[1] not in zones):
                continue
            changes = sorted(
                (e for e in self.history if (e["InstanceType"], e["AvailabilityZone"]) == key),
                key=lambda e: e["Timestamp"],
            )
            before = [e for e in changes if e["Timestamp"] <= start]
            after = [
                e for e in changes if start < e["Timestamp"] and (not end or e["Timestamp"] <= end)
            ]
            entries += before[-1:] + after
        # One entry per page, so the reader must follow the pages.
        return [{"SpotPriceHistory": [entry]} for entry in entries] or [{"SpotPriceHistory": []}]
