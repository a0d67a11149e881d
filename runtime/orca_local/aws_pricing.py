"""The local AWS's prices: a Price List API and settable spot prices (extensions (i)-(k)).

:mod:`orca_local.aws` installs this module into its server; the runtime reaches it
with plain boto3 (``AWS_ENDPOINT_URL``) as it would reach AWS.

(i) The Price List Query API's ``GetProducts``, which moto 5.2.5 does not have (it has
    no ``pricing`` backend at all). A request whose ``X-Amz-Target`` is
    ``AWSPriceListService.*`` is answered here, in the Price List's own document shape:
    each ``PriceList`` item a JSON string with ``product.attributes`` and
    ``terms.OnDemand.<offer>.priceDimensions.<rate>.pricePerUnit.USD`` per ``Hrs``. The
    catalogue is ``AmazonEC2`` in us-east-1 built from the table shipped with ORCA (its
    prices are us-east-1 list prices), with, per type, the Linux product that instances
    are billed as (``capacitystatus=Used``) and its capacity-reservation siblings
    (``UnusedCapacityReservation`` at the same rate, ``AllocatedCapacityReservation`` at
    zero), so filters matter as they do in AWS. Filters (``TERM_MATCH``, ``EQUALS``,
    ``ANY_OF``, ``NONE_OF``, ``CONTAINS``), ``MaxResults`` and ``NextToken`` work.
    :func:`set_on_demand_price` adds or changes a type's price in a region (``POST
    /_orca/on-demand-prices``); :func:`price_list_requests` lists what was asked (``GET
    /_orca/price-list-requests``), as CloudTrail would.
(j) A failing Price List API: :func:`fail_price_list` makes the next ``times`` calls (or
    every call until cleared) fail with an AWS error code (``POST
    /_orca/price-list-errors``), for tests of the fallback to the shipped table.
(k) Spot prices. moto answers DescribeSpotPriceHistory with one placeholder price
    (0.00001 USD, dated 2006) for every offered type and ignores the product, time and
    most other filters. Here the history holds only the prices set with
    :func:`set_spot_price` (``POST /_orca/spot-prices``), per (type, zone) and dated, and
    is read as EC2 reads it: ``InstanceTypes``, ``ProductDescriptions``
    (``Linux/UNIX``), the ``availability-zone``, ``instance-type`` and
    ``product-description`` filters, and ``StartTime``/``EndTime``, which return the
    price in effect at the start time and every change after it. A (type, zone) with no
    price set has no history, as for a type EC2 does not sell as spot there.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.responses.spot_instances import SpotInstances
from werkzeug.wrappers import Request, Response

from orca.catalog import Catalog

PRICE_LIST_TARGET = "AWSPriceListService."
SHIPPED_REGION = "us-east-1"
SPOT_PRODUCT = "Linux/UNIX"
# The Price List's codes for the on-demand offer term and its hourly rate.
ON_DEMAND_TERM = "JRTCKXETXF"
HOURLY_RATE = "6YS6EN2CT7"
_LOCATIONS = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-2": "US West (Oregon)",
    "eu-west-1": "EU (Ireland)",
    "eu-central-1": "EU (Frankfurt)",
}
# Statuses AWS gives these errors; any other code is a client error (400).
_ERROR_STATUS = {"InternalErrorException": 500, "ServiceUnavailableException": 503}

_lock = threading.RLock()
_installed = False
_original_spot_history: Callable[[SpotInstances], ActionResult] | None = None
_on_demand: dict[tuple[str, str], Decimal] = {}  # by (region, type)
_shipped_loaded = False
_requests: list[dict[str, str]] = []


@dataclass
class _Failure:
    code: str
    remaining: int | None  # None: until cleared


_failures: list[_Failure] = []
_spot_history: dict[tuple[str, str], list[tuple[datetime, Decimal]]] = {}


def install() -> None:
    """Patch moto's DescribeSpotPriceHistory in this process; safe to call more than once."""
    global _installed, _original_spot_history
    with _lock:
        if _installed:
            return
        _original_spot_history = SpotInstances.describe_spot_price_history
        replaced = _describe_spot_price_history
        SpotInstances.describe_spot_price_history = replaced  # type: ignore[method-assign]
        _installed = True


def set_on_demand_price(instance_type: str, usd_per_hour: Decimal | str, region: str) -> None:
    """Add or change the Price List's Linux on-demand price of a type in a region."""
    price = Decimal(str(usd_per_hour))
    if price < 0:
        raise ValueError(f"a price is zero or more, not {price}")
    with _lock:
        _catalogue()[(region, instance_type)] = price


def clear_on_demand_prices() -> None:
    """Back to the shipped table's prices."""
    global _shipped_loaded
    with _lock:
        _on_demand.clear()
        _shipped_loaded = False


def fail_price_list(code: str = "ServiceUnavailableException", times: int | None = None) -> None:
    """Fail the next ``times`` Price List calls (None: every call until cleared) with ``code``."""
    with _lock:
        _failures.append(_Failure(code, times))


def clear_price_list_errors() -> None:
    with _lock:
        _failures.clear()


def price_list_requests() -> list[dict[str, str]]:
    """Each GetProducts call answered or failed: its instanceType and regionCode filters."""
    with _lock:
        return [dict(r) for r in _requests]


def clear_price_list_requests() -> None:
    with _lock:
        _requests.clear()


def set_spot_price(
    instance_type: str, zone: str, usd_per_hour: Decimal | str, at: datetime | None = None
) -> None:
    """The spot price of a type in a zone changes to ``usd_per_hour`` at ``at`` (now)."""
    price = Decimal(str(usd_per_hour))
    when = at or datetime.now(UTC)
    if price <= 0 or when.tzinfo is None:
        raise ValueError(f"a spot price needs a positive price and an aware time: {price}, {when}")
    with _lock:
        history = _spot_history.setdefault((instance_type, zone), [])
        history.append((when, price))
        history.sort()


def spot_prices() -> list[dict[str, str]]:
    """The whole spot price history, oldest first per (type, zone)."""
    with _lock:
        return [
            {"instanceType": t, "zone": z, "usdPerHour": str(p), "timestamp": w.isoformat()}
            for (t, z), history in sorted(_spot_history.items())
            for w, p in history
        ]


def clear_spot_prices() -> None:
    with _lock:
        _spot_history.clear()


def _catalogue() -> dict[tuple[str, str], Decimal]:
    global _shipped_loaded
    if not _shipped_loaded:
        for known in Catalog.shipped():
            if known.on_demand_usd_per_hour is not None:
                _on_demand.setdefault((SHIPPED_REGION, known.name), known.on_demand_usd_per_hour)
        _shipped_loaded = True
    return _on_demand


def handles(environ: dict[str, Any]) -> bool:
    """Whether a request is for the Price List API (JSON protocol, by its target)."""
    return str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith(PRICE_LIST_TARGET)


def price_list_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The Price List API as a WSGI app."""
    request = Request(environ)
    operation = str(environ.get("HTTP_X_AMZ_TARGET", ""))[len(PRICE_LIST_TARGET) :]
    body = request.get_json(force=True, silent=True) or {}
    return _answer(operation, body)(environ, start_response)


def _answer(operation: str, body: dict[str, Any]) -> Response:
    if operation != "GetProducts":
        return _error("UnknownOperationException", f"{operation} is not served here")
    with _lock:
        filters = body.get("Filters", [])
        asked = {f.get("Field"): f.get("Value") for f in filters if f.get("Type") == "TERM_MATCH"}
        _requests.append(
            {
                "instanceType": asked.get("instanceType", ""),
                "regionCode": asked.get("regionCode", ""),
            }
        )
        failure = _next_failure()
        if failure is not None:
            return _error(failure, "the Price List API is failing (the local AWS was told to)")
        if body.get("ServiceCode") != "AmazonEC2":
            products: list[dict[str, Any]] = []
        else:
            products = [p for p in _products() if _matches(p, filters)]

    try:
        start = int(body.get("NextToken") or 0)
    except ValueError:
        return _error("InvalidNextTokenException", "The NextToken is not valid")
    size = int(body.get("MaxResults") or 100)
    page = products[start : start + size]
    answer: dict[str, Any] = {
        "FormatVersion": "aws_v1",
        "PriceList": [json.dumps(p) for p in page],
    }
    if start + size < len(products):
        answer["NextToken"] = str(start + size)
    return Response(json.dumps(answer), mimetype="application/x-amz-json-1.1")


def _next_failure() -> str | None:
    if not _failures:
        return None
    failure = _failures[0]
    if failure.remaining is not None:
        failure.remaining -= 1
        if failure.remaining <= 0:
            _failures.pop(0)
    return failure.code


def _error(code: str, message: str) -> Response:
    return Response(
        json.dumps({"__type": code, "Message": message}),
        status=_ERROR_STATUS.get(code, 400),
        mimetype="application/x-amz-json-1.1",
        headers={"x-amzn-ErrorType": code},
    )


def _products() -> list[dict[str, Any]]:
    products = []
    for (region, instance_type), price in sorted(_catalogue().items()):
        for status, rate in (
            ("Used", price),
            ("UnusedCapacityReservation", price),
            ("AllocatedCapacityReservation", Decimal(0)),
        ):
            products.append(_product(region, instance_type, status, rate))
    return products


def _product(region: str, instance_type: str, status: str, rate: Decimal) -> dict[str, Any]:
    usage = {"Used": "BoxUsage", "UnusedCapacityReservation": "UnusedBox"}.get(
        status, "Reservation"
    )
    attributes = {
        "servicecode": "AmazonEC2",
        "servicename": "Amazon Elastic Compute Cloud",
        "location": _LOCATIONS.get(region, region),
        "locationType": "AWS Region",
        "regionCode": region,
        "instanceType": instance_type,
        "instanceFamily": "General purpose",
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "licenseModel": "No License required",
        "capacitystatus": status,
        "marketoption": "OnDemand",
        "operation": "RunInstances",
        "usagetype": f"{usage}:{instance_type}",
        "currentGeneration": "Yes",
    }
    sku = hashlib.sha256(json.dumps(attributes, sort_keys=True).encode()).hexdigest()[:16].upper()
    term = f"{sku}.{ON_DEMAND_TERM}"
    dimension = {
        "rateCode": f"{term}.{HOURLY_RATE}",
        "description": f"${rate:.4f} per On Demand Linux {instance_type} Instance Hour",
        "beginRange": "0",
        "endRange": "Inf",
        "unit": "Hrs",
        "appliesTo": [],
        "pricePerUnit": {"USD": f"{rate:.10f}"},
    }
    return {
        "product": {"productFamily": "Compute Instance", "attributes": attributes, "sku": sku},
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": {
                term: {
                    "priceDimensions": {dimension["rateCode"]: dimension},
                    "sku": sku,
                    "effectiveDate": "2026-12-01T00:00:00Z",
                    "offerTermCode": ON_DEMAND_TERM,
                    "termAttributes": {},
                }
            }
        },
        "version": "20261201000000",
        "publicationDate": "2026-12-01T00:00:00Z",
    }


def _matches(product: dict[str, Any], filters: Iterable[dict[str, str]]) -> bool:
    attributes = product["product"]["attributes"]
    for f in filters:
        if f.get("Field") == "ServiceCode":
            continue
        have, want = attributes.get(f.get("Field", "")), f.get("Value", "")
        kind = f.get("Type", "TERM_MATCH")
        if kind in ("TERM_MATCH", "EQUALS") and have != want:
            return False
        if kind == "ANY_OF" and have not in want.split(","):
            return False
        if kind == "NONE_OF" and have in want.split(","):
            return False
        if kind == "CONTAINS" and (have is None or want not in have):
            return False
    return True


def _describe_spot_price_history(self: SpotInstances) -> ActionResult:
    types = set(self._get_param("InstanceTypes", []))
    products = set(self._get_param("ProductDescriptions", []))
    filters: dict[str, Any] = self._filters_from_querystring()
    start = _time(self._get_param("StartTime"))
    end = _time(self._get_param("EndTime")) or datetime.now(UTC)
    region = self.ec2_backend.region_name

    history: list[dict[str, Any]] = []
    with _lock:
        for (instance_type, zone), changes in sorted(_spot_history.items()):
            if not zone.startswith(region) or (types and instance_type not in types):
                continue
            if (products and SPOT_PRODUCT not in products) or not _spot_filters_pass(
                filters, instance_type, zone
            ):
                continue
            for when, price in _in_window(changes, start, end):
                history.append(
                    {
                        "AvailabilityZone": zone,
                        "InstanceType": instance_type,
                        "ProductDescription": SPOT_PRODUCT,
                        "SpotPrice": f"{price:.6f}",
                        "Timestamp": when,
                    }
                )
    # EC2 lists the newest first.
    history.sort(key=lambda entry: entry["Timestamp"], reverse=True)
    return ActionResult({"SpotPriceHistory": history})


def _spot_filters_pass(filters: dict[str, Any], instance_type: str, zone: str) -> bool:
    values = {"availability-zone": zone, "instance-type": instance_type}
    values["product-description"] = SPOT_PRODUCT
    return all(values.get(name) in wanted for name, wanted in filters.items())


def _in_window(
    changes: list[tuple[datetime, Decimal]], start: datetime | None, end: datetime
) -> list[tuple[datetime, Decimal]]:
    # The price in effect at the start time, and every change after it up to the end.
    if start is None:
        return [c for c in changes if c[0] <= end]
    before = [c for c in changes if c[0] <= start]
    after = [c for c in changes if start < c[0] <= end]
    return before[-1:] + after


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class InProcessPricing:
    """The pricing extensions for :class:`orca_local.aws.LocalAws` (same process)."""

    set_on_demand_price = staticmethod(set_on_demand_price)
    clear_on_demand_prices = staticmethod(clear_on_demand_prices)
    fail_price_list = staticmethod(fail_price_list)
    clear_price_list_errors = staticmethod(clear_price_list_errors)
    price_list_requests = staticmethod(price_list_requests)
    clear_price_list_requests = staticmethod(clear_price_list_requests)
    set_spot_price = staticmethod(set_spot_price)
    spot_prices = staticmethod(spot_prices)
    clear_spot_prices = staticmethod(clear_spot_prices)

    def clear_pricing(self) -> None:
        """Every pricing extension back to its start: shipped prices, no errors, no spot."""
        clear_on_demand_prices()
        clear_price_list_errors()
        clear_price_list_requests()
        clear_spot_prices()


def control(request: Request, path: list[str]) -> Response | None:
    """Answer a pricing call of the control endpoint; None for any other path."""
    method = request.method
    if path == ["on-demand-prices"] and method == "POST":
        body = request.get_json(force=True)
        set_on_demand_price(body["instanceType"], body["usdPerHour"], body["region"])
    elif path == ["on-demand-prices"] and method == "DELETE":
        clear_on_demand_prices()
    elif path == ["price-list-errors"] and method == "POST":
        body = request.get_json(force=True)
        fail_price_list(body.get("code") or "ServiceUnavailableException", body.get("times"))
    elif path == ["price-list-errors"] and method == "DELETE":
        clear_price_list_errors()
    elif path == ["price-list-requests"] and method == "GET":
        return Response(json.dumps(price_list_requests()), mimetype="application/json")
    elif path == ["price-list-requests"] and method == "DELETE":
        clear_price_list_requests()
    elif path == ["spot-prices"] and method == "POST":
        body = request.get_json(force=True)
        at = _time(body.get("timestamp"))
        set_spot_price(body["instanceType"], body["zone"], body["usdPerHour"], at)
    elif path == ["spot-prices"] and method == "GET":
        return Response(json.dumps(spot_prices()), mimetype="application/json")
    elif path == ["spot-prices"] and method == "DELETE":
        clear_spot_prices()
    else:
        return None
    return Response(status=204)


class PricingControl:
    """The pricing extensions of a local AWS in another process, for ``LocalAwsControl``."""

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        raise NotImplementedError

    def set_on_demand_price(
        self, instance_type: str, usd_per_hour: Decimal | str, region: str
    ) -> None:
        body = {"instanceType": instance_type, "usdPerHour": str(usd_per_hour), "region": region}
        self._call("POST", "on-demand-prices", body)

    def clear_on_demand_prices(self) -> None:
        self._call("DELETE", "on-demand-prices")

    def fail_price_list(
        self, code: str = "ServiceUnavailableException", times: int | None = None
    ) -> None:
        self._call("POST", "price-list-errors", {"code": code, "times": times})

    def clear_price_list_errors(self) -> None:
        self._call("DELETE", "price-list-errors")

    def price_list_requests(self) -> list[dict[str, str]]:
        asked: list[dict[str, str]] = self._call("GET", "price-list-requests")
        return asked

    def clear_price_list_requests(self) -> None:
        self._call("DELETE", "price-list-requests")

    def set_spot_price(
        self,
        instance_type: str,
        zone: str,
        usd_per_hour: Decimal | str,
        at: datetime | None = None,
    ) -> None:
        body = {"instanceType": instance_type, "zone": zone, "usdPerHour": str(usd_per_hour)}
        if at is not None:
            body["timestamp"] = at.isoformat()
        self._call("POST", "spot-prices", body)

    def spot_prices(self) -> list[dict[str, str]]:
        listed: list[dict[str, str]] = self._call("GET", "spot-prices")
        return listed

    def clear_spot_prices(self) -> None:
        self._call("DELETE", "spot-prices")

    def clear_pricing(self) -> None:
        """Every pricing extension back to its start: shipped prices, no errors, no spot."""
        self.clear_on_demand_prices()
        self.clear_price_list_errors()
        self.clear_price_list_requests()
        self.clear_spot_prices()
