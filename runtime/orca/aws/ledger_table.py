"""The cost ledger's DynamoDB table: reads and all-or-nothing writes of plain items.

:mod:`orca.ledger` decides what the ledger holds; this module only turns its small
vocabulary of writes into DynamoDB requests, so the deciding code never builds an
expression and the unit tests can use a stateful fake (``tests.fakes.ledger_table``)
that implements the same vocabulary.

The vocabulary (one :meth:`LedgerTable.transact` call is one ``TransactWriteItems``):

- :class:`PutNew`: create an item that must not exist yet (``attribute_not_exists(pk)``).
- :class:`Update`: ``SET`` some attributes and ``ADD`` to numbers (``ADD`` on an absent
  attribute or item starts from 0, so totals need no creation step), on the conditions
  that some attributes equal given values (``expect``) and that a number, absent
  counting as 0, is at most a value (``at_most``). DynamoDB conditions cannot add, so
  "committed + estimate <= limit" is sent as "committed <= limit - estimate".

AWS facts this relies on:

- TransactWriteItems checks every condition and writes every item as one serializable
  step, or writes nothing and fails with ``TransactionCanceledException`` whose
  ``CancellationReasons`` has one entry per item, in request order: ``None`` for items
  whose condition held, ``ConditionalCheckFailed`` (with the item as it is, when asked
  with ``ReturnValuesOnConditionCheckFailure=ALL_OLD``), ``TransactionConflict`` when
  another request was changing the item at the same time (retrying helps), and others.
  One transaction may not touch the same item twice, and holds at most 100 items.
- botocore fills ``ClientRequestToken`` once per call, so its own retries of a request
  whose answer was lost are not applied twice (DynamoDB remembers tokens for 10 minutes).
- IAM has no ``TransactWriteItems`` action: each item in a transaction is authorised as
  its own action (``PutItem``, ``UpdateItem``, ``ConditionCheckItem``).
- Reads here are strongly consistent (``ConsistentRead``): a record must be read as the
  last transaction left it, not as an eventually consistent replica saw it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from orca.aws.errors import aws_call, translate

log = logging.getLogger(__name__)

# An item as the ledger sees it: attribute name to str, Decimal, int or a map of them.
Item = dict[str, Any]
# (pk, sk): the table's hash and range key, both strings.
Key = tuple[str, str]

MAX_TRANSACTION_ITEMS = 100

CONDITION_FAILED = "ConditionalCheckFailed"
CONFLICT = "TransactionConflict"
# Reasons after which the same transaction may succeed when sent again.
RETRYABLE_REASONS = frozenset(
    {CONFLICT, "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)


@dataclass(frozen=True)
class PutNew:
    """Create ``key`` with ``item``'s attributes; fails if the item exists."""

    key: Key
    item: Mapping[str, Any]


@dataclass(frozen=True)
class Update:
    """SET ``set``, ADD ``add``; only if ``expect`` holds and ``at_most`` is not passed."""

    key: Key
    set: Mapping[str, Any] = field(default_factory=dict)
    add: Mapping[str, Decimal] = field(default_factory=dict)
    expect: Mapping[str, Any] = field(default_factory=dict)
    at_most: tuple[str, Decimal] | None = None


Write = PutNew | Update


@dataclass(frozen=True)
class Reason:
    """Why one item of a cancelled transaction failed; ``code`` None: it did not."""

    code: str | None
    item: Item | None = None

    @property
    def condition_failed(self) -> bool:
        return self.code == CONDITION_FAILED


class TransactionCancelled(Exception):
    """A transaction wrote nothing; ``reasons`` has one entry per write, in order."""

    def __init__(self, message: str, reasons: Sequence[Reason]) -> None:
        super().__init__(message)
        self.reasons = tuple(reasons)

    @property
    def retryable(self) -> bool:
        """Only conflicts or throttling stopped it: the same writes may pass if sent again."""
        codes = {r.code for r in self.reasons if r.code is not None}
        return bool(codes) and codes <= RETRYABLE_REASONS


class LedgerTable:
    """The ledger table through a boto3 DynamoDB client (``AwsClients.client("dynamodb")``)."""

    def __init__(self, dynamodb_client: Any, table_name: str) -> None:
        self._client = dynamodb_client
        self.table_name = table_name
        self._to = TypeSerializer()
        self._from = TypeDeserializer()

    def get(self, key: Key) -> Item | None:
        with aws_call(f"reading {key[0]} {key[1]} from the ledger {self.table_name}"):
            answer = self._client.get_item(
                TableName=self.table_name, Key=self._key(key), ConsistentRead=True
            )
        found = answer.get("Item")
        return None if found is None else self._decode(found)

    def query(self, pk: str, sk_prefix: str | None = None) -> list[Item]:
        """Every item of partition ``pk`` (whose sk starts with ``sk_prefix``), in sk order."""
        return list(self._query(pk, sk_prefix))

    def _query(self, pk: str, sk_prefix: str | None) -> Iterator[Item]:
        condition = "pk = :pk"
        values: dict[str, Any] = {":pk": {"S": pk}}
        if sk_prefix is not None:
            condition += " AND begins_with(sk, :prefix)"
            values[":prefix"] = {"S": sk_prefix}
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
        }
        with aws_call(f"querying {pk} in the ledger {self.table_name}"):
            # A Query answers at most 1 MB; LastEvaluatedKey says where the next page starts.
            while True:
                page = self._client.query(**request)
                yield from (self._decode(i) for i in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def transact(self, writes: Sequence[Write], context: str) -> None:
        """All of ``writes`` or none; :class:`TransactionCancelled` says which failed."""
        if not 0 < len(writes) <= MAX_TRANSACTION_ITEMS:
            raise ValueError(f"{context}: {len(writes)} writes in one transaction")
        items = [self._transact_item(w) for w in writes]
        try:
            self._client.transact_write_items(TransactItems=items)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise translate(e, context) from e
            reasons = [self._reason(r) for r in e.response.get("CancellationReasons", [])]
            log.debug("%s: transaction cancelled: %s", context, [r.code for r in reasons])
            raise TransactionCancelled(f"{context}: {e}", reasons) from e
        except Exception as e:
            raise translate(e, context) from e

    def _transact_item(self, write: Write) -> dict[str, Any]:
        if isinstance(write, PutNew):
            item = {"pk": write.key[0], "sk": write.key[1], **write.item}
            return {
                "Put": {
                    "TableName": self.table_name,
                    "Item": {k: self._to.serialize(v) for k, v in item.items()},
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
        return {"Update": {"TableName": self.table_name, **self._update(write)}}

    def _update(self, write: Update) -> dict[str, Any]:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}

        def name(attribute: str) -> str:
            placeholder = f"#n{len(names)}"
            names[placeholder] = attribute
            return placeholder

        def value(v: Any) -> str:
            placeholder = f":v{len(values)}"
            values[placeholder] = self._to.serialize(v)
            return placeholder

        # The update: SET for attributes given as they are, ADD for numbers that accrue.
        clauses = []
        if write.set:
            clauses.append(
                "SET " + ", ".join(f"{name(a)} = {value(v)}" for a, v in write.set.items())
            )
        if write.add:
            clauses.append(
                "ADD " + ", ".join(f"{name(a)} {value(v)}" for a, v in write.add.items())
            )
        request: dict[str, Any] = {
            "Key": self._key(write.key),
            "UpdateExpression": " ".join(clauses),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

        # The conditions, all of which must hold. A negative bound cannot be met even by
        # an absent number (0), so it is sent without the attribute_not_exists branch.
        conditions = [f"{name(a)} = {value(v)}" for a, v in write.expect.items()]
        if write.at_most is not None:
            attribute, bound = write.at_most
            number = name(attribute)
            at_most = f"{number} <= {value(bound)}"
            if bound >= 0:
                at_most = f"(attribute_not_exists({number}) OR {at_most})"
            conditions.append(at_most)
        if conditions:
            request["ConditionExpression"] = " AND ".join(conditions)
        if not clauses:
            raise ValueError(f"an update of {write.key} that neither sets nor adds anything")
        request["ExpressionAttributeNames"] = names
        request["ExpressionAttributeValues"] = values
        return request

    def _reason(self, raw: Mapping[str, Any]) -> Reason:
        code = raw.get("Code")
        found = raw.get("Item")
        return Reason(
            code=None if code in (None, "None") else str(code),
            item=None if found is None else self._decode(found),
        )

    def _key(self, key: Key) -> dict[str, Any]:
        return {"pk": {"S": key[0]}, "sk": {"S": key[1]}}

    def _decode(self, raw: Mapping[str, Any]) -> Item:
        return {k: self._from.deserialize(v) for k, v in raw.items()}
