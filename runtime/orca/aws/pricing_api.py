"""The raw AWS calls behind ORCA's prices: the Price List API and the spot price history.

:mod:`orca.pricing` decides what a price is and how long to trust it; this module
only asks AWS and reads the answers. AWS facts it relies on:

- The Price List Query API (service ``pricing``) has endpoints in only a few regions
  (us-east-1, eu-central-1, ap-south-1 ...), none necessarily the runtime's, and
  answers for every region from each of them. The region priced is a filter
  (``regionCode``), not the client's region, so :func:`price_list_client` makes
  its client in us-east-1.
- ``GetProducts`` for ``AmazonEC2`` with the filters of :func:`on_demand_filters`
  names the one product an ordinary Linux instance is billed as: shared tenancy,
  no pre-installed software, no licence, and ``capacitystatus=Used`` (the other
  values price the unused part of capacity reservations). Each ``PriceList`` entry
  is a JSON *string* holding the product and its terms; the on-demand hourly rate
  is in ``terms.OnDemand.<offer>.priceDimensions.<rate>.pricePerUnit.USD`` with
  ``unit`` ``Hrs``. Filters match one value each (``TERM_MATCH``), so one call
  prices one type.
- ``DescribeSpotPriceHistory`` with ``StartTime`` = now returns, per zone, the price
  in effect at that moment (and any change after it), so the newest entry per
  (type, zone) is the current price. Accounts without EC2-Classic see the product
  description ``Linux/UNIX``. The call takes many types at once. With ``EndTime``
  too it is the price history of a run: what was in effect at its start and each
  change up to its end, which is how a spot instance is billed.

Every call runs inside :func:`~orca.aws.errors.aws_call`, so failures arrive as the
:class:`~orca.aws.errors.AwsError` kinds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import boto3
from botocore.config import Config

from orca import __version__
from orca.aws.errors import aws_call

logger = logging.getLogger(__name__)

# A boto3 client; boto3 ships no type information for it.
Client = Any

PRICE_LIST_REGION = "us-east-1"
SERVICE_CODE = "AmazonEC2"
LINUX_SPOT_PRODUCT = "Linux/UNIX"
# DescribeSpotPriceHistory documents no limit on InstanceTypes; stay modest per call.
_SPOT_TYPES_PER_CALL = 50


def price_list_client(
    session: boto3.Session | None = None,
    *,
    endpoint_url: str | None = None,
    region: str = PRICE_LIST_REGION,
    max_attempts: int = 3,
    connect_timeout: float = 5.0,
    read_timeout: float = 20.0,
) -> Client:
    """A ``pricing`` client in a region that has the Price List API.

    As for every ORCA client, the endpoint comes from ``endpoint_url`` or boto3's own
    ``AWS_ENDPOINT_URL`` variables. ``max_attempts`` counts every call, the first
    included. Few attempts: a failed price falls back to the shipped table, so a long
    retry loop would only delay a launch.
    """
    made = (session or boto3.Session()).client(
        "pricing",
        region_name=region,
        endpoint_url=endpoint_url,
        config=Config(
            region_name=region,
            # botocore's "max_attempts" counts retries; "total_max_attempts" counts calls.
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            user_agent_extra=f"orca/{__version__}",
        ),
    )
    return made


def on_demand_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    """The GetProducts filters that name one type's Linux on-demand product in a region."""
    terms = {
        "instanceType": instance_type,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
    }
    return [
        {"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in terms.items()
    ]


def get_on_demand_products(pricing: Client, instance_type: str, region: str) -> list[str]:
    """The Price List documents (JSON strings) for one type's Linux on-demand product."""
    documents: list[str] = []
    with aws_call(f"reading the on-demand price of {instance_type} in {region}"):
        paginator = pricing.get_paginator("get_products")
        pages = paginator.paginate(
            ServiceCode=SERVICE_CODE,
            Filters=on_demand_filters(instance_type, region),
            FormatVersion="aws_v1",
        )
        for page in pages:
            documents.extend(page.get("PriceList", []))
    return documents


def on_demand_usd_per_hour(documents: Iterable[str | Mapping[str, Any]]) -> Decimal | None:
    """The hourly on-demand rate in the documents, or None when they hold none.

    Products priced at zero and products of another market option or operation are
    skipped. Should several remain with different rates, the highest is taken: an
    estimate that holds budget may be high, never low.
    """
    rates: list[Decimal] = []
    for document in documents:
        product = json.loads(document) if isinstance(document, str) else document
        attributes = product.get("product", {}).get("attributes", {})
        if attributes.get("marketoption", "OnDemand") != "OnDemand":
            continue
        if attributes.get("operation", "RunInstances") != "RunInstances":
            continue
        rates.extend(_hourly_rates(product.get("terms", {}).get("OnDemand", {})))

    if len(set(rates)) > 1:
        logger.debug("the Price List has several on-demand rates %s; taking the highest", rates)
    return max(rates) if rates else None


def _hourly_rates(offers: Mapping[str, Any]) -> list[Decimal]:
    rates = []
    for offer in offers.values():
        for dimension in offer.get("priceDimensions", {}).values():
            if dimension.get("unit") != "Hrs":
                continue
            try:
                rate = Decimal(str(dimension.get("pricePerUnit", {}).get("USD")))
            except InvalidOperation:
                continue
            if rate.is_finite() and rate > 0:
                rates.append(rate)
    return rates


@dataclass(frozen=True)
class SpotQuote:
    """One entry of the spot price history: the price in a zone since ``timestamp``."""

    instance_type: str
    zone: str
    usd_per_hour: Decimal
    timestamp: datetime


def current_spot_prices(
    ec2: Client, instance_types: Iterable[str], now: datetime
) -> dict[tuple[str, str], SpotQuote]:
    """The current Linux spot price of each type in each zone, by (type, zone)."""
    wanted = sorted(set(instance_types))
    newest: dict[tuple[str, str], SpotQuote] = {}
    with aws_call(f"reading spot prices of {', '.join(wanted)}"):
        paginator = ec2.get_paginator("describe_spot_price_history")
        for start in range(0, len(wanted), _SPOT_TYPES_PER_CALL):
            pages = paginator.paginate(
                InstanceTypes=wanted[start : start + _SPOT_TYPES_PER_CALL],
                ProductDescriptions=[LINUX_SPOT_PRODUCT],
                StartTime=now,
            )
            for page in pages:
                for entry in page.get("SpotPriceHistory", []):
                    quote = _quote(entry)
                    key = (quote.instance_type, quote.zone)
                    if _newer(quote, newest.get(key)):
                        newest[key] = quote
    return newest


def spot_price_changes(
    ec2: Client, instance_type: str, zone: str, start: datetime, end: datetime
) -> list[SpotQuote]:
    """The Linux spot prices of a type in a zone over ``[start, end]``, oldest first: the
    one in effect at ``start`` and each change after it."""
    changes: list[SpotQuote] = []
    with aws_call(f"reading the spot prices of {instance_type} in {zone}"):
        pages = ec2.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=[instance_type],
            ProductDescriptions=[LINUX_SPOT_PRODUCT],
            Filters=[{"Name": "availability-zone", "Values": [zone]}],
            StartTime=start,
            EndTime=end,
        )
        for page in pages:
            changes.extend(_quote(entry) for entry in page.get("SpotPriceHistory", []))
    return sorted(
        (q for q in changes if q.zone == zone and q.instance_type == instance_type),
        key=lambda q: q.timestamp,
    )


def _quote(entry: Mapping[str, Any]) -> SpotQuote:
    return SpotQuote(
        instance_type=entry["InstanceType"],
        zone=entry["AvailabilityZone"],
        usd_per_hour=Decimal(entry["SpotPrice"]),
        timestamp=entry["Timestamp"],
    )


def _newer(quote: SpotQuote, known: SpotQuote | None) -> bool:
    return known is None or quote.timestamp > known.timestamp
