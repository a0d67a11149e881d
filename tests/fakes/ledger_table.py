"""FakeLedgerTable: a stateful stand-in for :class:`orca.aws.ledger_table.LedgerTable`.

It keeps items in memory and applies a transaction as DynamoDB does: every condition
is checked and every write applied under one lock, or nothing is written and
:class:`~orca.aws.ledger_table.TransactionCancelled` carries one reason per write
(``ConditionalCheckFailed`` with the item as it was). Two writes to one item in a
transaction are refused as DynamoDB refuses them. Tests make the next transactions
fail with ``TransactionConflict`` (:meth:`FakeLedgerTable.conflict_next`), as
DynamoDB does when two transactions meet on an item, and count calls in ``calls``.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal

from orca.aws.ledger_table import (
    CONDITION_FAILED,
    CONFLICT,
    MAX_TRANSACTION_ITEMS,
    Item,
    Key,
    PutNew,
    Reason,
    TransactionCancelled,
    Write,
)


class FakeLedgerTable:
    """The public methods of ``LedgerTable``, over items kept in memory."""

    def __init__(self, table_name: str = "ledger") -> None:
        self.table_name = table_name
        self.items: dict[Key, Item] = {}
        self.calls: Counter[str] = Counter()
        self._conflicts = 0
        self._lock = threading.Lock()

    def conflict_next(self, times: int) -> None:
        """The next ``times`` transactions are cancelled with TransactionConflict."""
        with self._lock:
            self._conflicts = times

    def get(self, key: Key) -> Item | None:
        with self._lock:
            self.calls["get"] += 1
            found = self.items.get(key)
            return copy.deepcopy(found) if found is not None else None

    def query(self, pk: str, sk_prefix: str | None = None) -> list[Item]:
        with self._lock:
            self.calls["query"] += 1
            return [
                copy.deepcopy(item)
                for (p, s), item in sorted(self.items.items())
                if p == pk and (sk_prefix is None or s.startswith(sk_prefix))
            ]

    def transact(self, writes: Sequence[Write], context: str) -> None:
        if not 0 < len(writes) <= MAX_TRANSACTION_ITEMS:
            raise ValueError(f"{context}: {len(writes)} writes in one transaction")
        if len({w.key for w in writes}) != len(writes):
            raise ValueError(f"{context}: two writes to one item in a transaction")
        with self._lock:
            self.calls["transact"] += 1
            if self._conflicts:
                self._conflicts -= 1
                raise TransactionCancelled(f"{context}: conflict", [Reason(CONFLICT)] * len(writes))

            # Every condition first, against the items as they are.
            reasons = [self._check(w) for w in writes]
            if any(r.code is not None for r in reasons):
                raise TransactionCancelled(f"{context}: cancelled", reasons)

            for write in writes:
                self._apply(write)

    def _check(self, write: Write) -> Reason:
        current = self.items.get(write.key)
        failed = Reason(CONDITION_FAILED, copy.deepcopy(current) if current else None)
        if isinstance(write, PutNew):
            return failed if current is not None else Reason(None)
        attributes = current or {}
        for name, expected in write.expect.items():
            if attributes.get(name) != expected:
                return failed
        if write.at_most is not None:
            name, bound = write.at_most
            number = attributes.get(name)
            if (Decimal(0) if number is None else number) > bound:
                return failed
            if number is None and bound < 0:
                return failed
        return Reason(None)

    def _apply(self, write: Write) -> None:
        if isinstance(write, PutNew):
            self.items[write.key] = {"pk": write.key[0], "sk": write.key[1], **write.item}
            return
        item = self.items.setdefault(write.key, {"pk": write.key[0], "sk": write.key[1]})
        item.update(copy.deepcopy(dict(write.set)))
        for name, amount in write.add.items():
            item[name] = item.get(name, Decimal(0)) + amount
