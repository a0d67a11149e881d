"""The cost ledger against DynamoDB as the local AWS serves it (moto, extension (h)).

Each test gets its own table, laid out as the envelope's (``infra/orca_infra/storage.py``:
hash key ``pk`` S, range key ``sk`` S, pay per request), so what these tests see is
what the runtime sees: real TransactWriteItems with conditions, cancellation reasons
and strongly consistent reads over HTTP.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from botocore.exceptions import ClientError

from orca.aws.clients import AwsClients
from orca.aws.ledger_table import LedgerTable, PutNew, TransactionCancelled, Update
from orca.ledger import Ledger
from orca.ledger_records import BudgetExceeded, HoldState, PodRecord
from orca_local.aws import LocalAwsProcess
from orca_local.envelope import ledger_table

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
HOUR = 3600
_tables = itertools.count()


@pytest.fixture
def table_name(aws_clients: AwsClients) -> str:
    name = f"ledger-{next(_tables)}"
    ledger_table(aws_clients.client("dynamodb"), name)
    return name


@pytest.fixture
def new_ledger(
    local_aws: LocalAwsProcess,
    table_name: str,
    clients_for: Callable[[str], AwsClients],
) -> Iterator[Callable[[], Ledger]]:
    """A runtime's ledger: each call is a fresh process's view (new clients, new object)."""
    made: list[AwsClients] = []

    def make() -> Ledger:
        clients = clients_for(local_aws.url)
        made.append(clients)
        return Ledger.on(
            clients, table_name, cluster="campus", department="physics", clock=lambda: NOW
        )

    yield make
    for clients in made:
        clients.close()


def hold(ledger: Ledger, uid: str, price: str = "10", hours: int = 1) -> PodRecord:
    return ledger.hold(
        uid,
        "ml",
        f"pod-{uid}",
        "g6e.xlarge",
        "on-demand",
        Decimal(price),
        hours * HOUR,
        Decimal("100"),
        namespace_limit_usd=Decimal("80"),
    )


def test_moto_cancels_a_transaction_with_a_reason_per_item(
    aws_clients: AwsClients, table_name: str
) -> None:
    table = LedgerTable(aws_clients.client("dynamodb"), table_name)
    table.transact([Update(("m", "total"), add={"committed_usd": Decimal(5)})], "setup")

    with pytest.raises(TransactionCancelled) as cancelled:
        table.transact(
            [
                PutNew(("pod", "record"), {"state": "held"}),
                Update(
                    ("m", "total"),
                    add={"committed_usd": Decimal(6)},
                    at_most=("committed_usd", Decimal(4)),
                ),
            ],
            "a hold that does not fit",
        )

    none, failed = cancelled.value.reasons
    assert none.code is None and failed.condition_failed and not cancelled.value.retryable
    assert failed.item is not None and failed.item["committed_usd"] == Decimal(5)
    assert isinstance(cancelled.value.__cause__, ClientError)
    assert table.get(("pod", "record")) is None  # nothing of it was written
    assert table.get(("m", "total")) == {"pk": "m", "sk": "total", "committed_usd": Decimal(5)}


def test_a_hold_one_cent_over_is_refused_and_one_at_the_limit_accepted(
    new_ledger: Callable[[], Ledger],
) -> None:
    ledger = new_ledger()
    hold(ledger, "a", price="60")
    hold(ledger, "b", price="20")  # the namespace's $80 share is full
    with pytest.raises(BudgetExceeded) as refused:
        ledger.hold("c", "astro", "x", "c7i.4xlarge", "spot", Decimal("20.01"), HOUR, Decimal(100))
    ledger.hold("d", "astro", "y", "c7i.4xlarge", "spot", Decimal("20"), HOUR, Decimal(100))

    assert refused.value.scope == "department"
    assert refused.value.left_usd == Decimal("20")
    assert ledger.month_summary("2026-12").committed_usd == Decimal("100")


def test_twenty_threads_holding_at_once_never_overshoot(new_ledger: Callable[[], Ledger]) -> None:
    # Two runtimes, ten threads each, share the last dollars of the month.
    runtimes = [new_ledger(), new_ledger()]
    start = threading.Barrier(20)
    admitted: list[str] = []
    refused: list[str] = []

    def admit(i: int) -> None:
        start.wait()
        uid = f"pod{i}"
        try:
            runtimes[i % 2].hold(
                uid, "astro", uid, "g6e.xlarge", "on-demand", Decimal("7"), HOUR, Decimal(100)
            )
            admitted.append(uid)
        except BudgetExceeded:
            refused.append(uid)

    threads = [threading.Thread(target=admit, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    summary = new_ledger().month_summary("2026-12")
    assert (len(admitted), len(refused)) == (14, 6)
    assert summary.committed_usd == Decimal("98") <= Decimal("100")
    assert sorted(p.pod_uid for p in summary.pods) == sorted(admitted)


def test_the_same_hold_twice_and_settle_twice_count_once(
    new_ledger: Callable[[], Ledger],
) -> None:
    ledger = new_ledger()
    first = hold(ledger, "a", price="3.6", hours=2)
    assert hold(ledger, "a", price="3.6", hours=2) == first
    assert ledger.month_summary("2026-12").held_usd == Decimal("7.2")

    end = NOW + timedelta(seconds=1500)
    settled = ledger.settle("a", "i-0a", NOW, end, Decimal("3.6"))
    assert new_ledger().settle("a", "i-0a", NOW, end, Decimal("3.6")) == settled

    summary = ledger.month_summary("2026-12")
    assert (summary.spent_usd, summary.held_usd) == (Decimal("1.5"), 0)


def test_a_runtime_killed_between_hold_and_launch_finds_its_hold_after_restart(
    new_ledger: Callable[[], Ledger],
) -> None:
    before = new_ledger()
    hold(before, "launched", price="10")
    hold(before, "never-launched", price="20")

    after = new_ledger()
    found = after.find("launched")
    assert found is not None and found.state is HoldState.HELD
    assert found.estimate_usd == Decimal("10")
    after.launched("launched", "i-0a", NOW + timedelta(minutes=1))
    after.settle(
        "launched", "i-0a", NOW + timedelta(minutes=1), NOW + timedelta(minutes=31), Decimal(10)
    )
    released = after.release("never-launched")
    after.release("never-launched")

    assert released is not None and released.state is HoldState.RELEASED
    summary = after.month_summary("2026-12")
    assert (summary.spent_usd, summary.held_usd) == (Decimal("5"), 0)
    assert summary.left_usd == Decimal("95")


def test_a_pod_across_the_month_boundary_charges_each_month_its_part(
    new_ledger: Callable[[], Ledger],
) -> None:
    ledger = new_ledger()
    hold(ledger, "a", price="3.6", hours=4)
    launched = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    ledger.settle("a", "i-0a", launched, launched + timedelta(hours=3), Decimal("3.6"))

    december, january = ledger.month_summary("2026-12"), ledger.month_summary("2027-01")
    assert (december.spent_usd, december.held_usd) == (Decimal("3.6"), 0)
    assert (january.spent_usd, january.held_usd) == (Decimal("7.2"), 0)
    assert [n.namespace for n in january.namespaces] == ["ml"]


def test_the_summary_equals_the_sum_of_the_records(new_ledger: Callable[[], Ledger]) -> None:
    ledger = new_ledger()
    for i in range(5):
        hold(ledger, f"p{i}", price=f"{i + 1}.5")
    for i in range(3):
        ledger.settle(f"p{i}", f"i-{i}", NOW, NOW + timedelta(seconds=100 * (i + 1)), Decimal(9))
    ledger.release("p3")

    summary = ledger.month_summary("2026-12")
    records = ledger.records(NOW, NOW + timedelta(days=1))

    assert summary.spent_usd == sum(r.spent_usd for r in records) == Decimal("1.5")
    assert summary.held_usd == sum(r.held_usd for r in records) == Decimal("5.5")
    (namespace,) = summary.namespaces
    assert (namespace.spent_usd, namespace.held_usd, namespace.limit_usd) == (
        Decimal("1.5"),
        Decimal("5.5"),
        Decimal("80"),
    )
