"""The cost ledger over the fake table: holds that hold, settles and releases once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from orca.ledger import Ledger
from orca.ledger_records import (
    BudgetExceeded,
    HoldState,
    LedgerBusy,
    PodRecord,
    RecordNotFound,
    billed_parts,
    estimate_usd,
)
from tests.fakes.ledger_table import FakeLedgerTable

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
HOUR = 3600


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def table() -> FakeLedgerTable:
    return FakeLedgerTable()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def ledger_on(table: FakeLedgerTable, clock: Clock) -> Ledger:
    return Ledger(table, cluster="campus", department="physics", clock=clock, sleep=lambda _: None)


@pytest.fixture
def ledger(table: FakeLedgerTable, clock: Clock) -> Ledger:
    return ledger_on(table, clock)


def hold(ledger: Ledger, uid: str, price: str = "10", hours: int = 1, **kw: object) -> PodRecord:
    args: dict[str, object] = {
        "namespace": "ml",
        "name": f"pod-{uid}",
        "instance_type": "g6e.xlarge",
        "market": "on-demand",
        "usd_per_hour": Decimal(price),
        "bound_seconds": hours * HOUR,
        "limit_usd": Decimal("100"),
    }
    args.update(kw)
    return ledger.hold(uid, **args)  # type: ignore[arg-type]


def test_a_hold_exactly_at_the_limit_is_accepted(ledger: Ledger) -> None:
    hold(ledger, "a", price="60")
    hold(ledger, "b", price="40")

    summary = ledger.month_summary("2026-12")
    assert summary.held_usd == Decimal("100")
    assert summary.left_usd == 0


def test_a_hold_that_would_cross_the_limit_by_one_cent_is_refused(ledger: Ledger) -> None:
    hold(ledger, "a", price="60")

    with pytest.raises(BudgetExceeded) as refused:
        hold(ledger, "b", price="40.01")

    assert refused.value.scope == "department"
    assert refused.value.asked_usd == Decimal("40.01")
    assert refused.value.left_usd == Decimal("40")
    message = str(refused.value)
    assert "would hold $40.01" in message and "$40.00 left of its $100.00 budget" in message
    assert "resets (2027-01-01T00:00:00Z)" in message and "pulumi config set budget" in message
    assert ledger.find("b") is None
    assert ledger.month_summary("2026-12").held_usd == Decimal("60")


def test_an_estimate_larger_than_the_whole_limit_is_refused_in_an_empty_month(
    ledger: Ledger,
) -> None:
    with pytest.raises(BudgetExceeded) as refused:
        hold(ledger, "a", price="100.01")
    assert refused.value.left_usd == Decimal("100")


def test_the_namespace_share_is_a_limit_of_its_own(ledger: Ledger) -> None:
    hold(ledger, "a", price="30", namespace_limit_usd=Decimal("50"))

    with pytest.raises(BudgetExceeded) as refused:
        hold(ledger, "b", price="20.01", namespace_limit_usd=Decimal("50"))
    hold(ledger, "c", price="60", namespace="astro", name="big")

    assert refused.value.scope == "namespace"
    assert "namespace ml has $20.00 left of its $50.00 share" in str(refused.value)
    assert ledger.month_summary("2026-12").held_usd == Decimal("90")


def test_twenty_threads_holding_at_once_never_overshoot(ledger: Ledger) -> None:
    start = threading.Barrier(20)
    admitted, refused = [], []

    def admit(i: int) -> None:
        start.wait()
        try:
            hold(ledger, f"pod{i}", price="7")
            admitted.append(i)
        except BudgetExceeded:
            refused.append(i)

    threads = [threading.Thread(target=admit, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    summary = ledger.month_summary("2026-12")
    assert len(admitted) == 14 and len(refused) == 6  # 14 x $7 = $98 <= $100 < $105
    assert summary.committed_usd == Decimal("98") <= Decimal("100")
    assert sorted(p.pod_uid for p in summary.pods) == sorted(f"pod{i}" for i in admitted)


def test_the_same_hold_twice_counts_once(ledger: Ledger, table: FakeLedgerTable) -> None:
    first = hold(ledger, "a", price="10")
    again = hold(ledger, "a", price="10")

    assert again == first
    assert ledger.month_summary("2026-12").held_usd == Decimal("10")


def test_a_hold_conflicting_with_a_concurrent_transaction_is_sent_again(
    ledger: Ledger, table: FakeLedgerTable
) -> None:
    table.conflict_next(3)
    hold(ledger, "a", price="10")
    assert table.calls["transact"] == 4
    assert ledger.month_summary("2026-12").held_usd == Decimal("10")


def test_conflicts_that_never_end_make_the_ledger_busy(table: FakeLedgerTable) -> None:
    ledger = Ledger(table, cluster="c", department="d", sleep=lambda _: None, attempts=3)
    table.conflict_next(10)
    with pytest.raises(LedgerBusy):
        hold(ledger, "a")


def test_settle_replaces_the_hold_by_the_cost_per_second(ledger: Ledger, clock: Clock) -> None:
    hold(ledger, "a", price="3.6", hours=6)
    launched = NOW + timedelta(minutes=2)
    ledger.launched("a", "i-0a", launched)

    clock.now = launched + timedelta(seconds=1000)
    assert ledger.accrued_usd("a") == Decimal("1")  # 3.6 $/h is 0.001 $/s

    record = ledger.settle(
        "a", "i-0a", launched, launched + timedelta(seconds=1234), Decimal("3.6")
    )

    assert record.state is HoldState.SETTLED and record.cost_usd == Decimal("1.234")
    summary = ledger.month_summary("2026-12")
    assert (summary.spent_usd, summary.held_usd) == (Decimal("1.234"), 0)
    (part,) = summary.pods
    assert (part.spent_usd, part.held_usd, part.seconds) == (Decimal("1.234"), 0, 1234)
    assert ledger.accrued_usd("a") == Decimal("1.234")


def test_settle_twice_counts_once(ledger: Ledger) -> None:
    hold(ledger, "a", price="3.6")
    end = NOW + timedelta(seconds=600)
    first = ledger.settle("a", "i-0a", NOW, end, Decimal("3.6"))
    again = ledger.settle("a", "i-0a", NOW, end, Decimal("3.6"))

    assert again == first
    assert ledger.month_summary("2026-12").spent_usd == Decimal("0.6")


def test_settles_racing_from_threads_count_once(ledger: Ledger) -> None:
    hold(ledger, "a", price="3.6")
    start = threading.Barrier(8)

    def settle() -> None:
        start.wait()
        ledger.settle("a", "i-0a", NOW, NOW + timedelta(seconds=600), Decimal("3.6"))

    threads = [threading.Thread(target=settle) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    summary = ledger.month_summary("2026-12")
    assert (summary.spent_usd, summary.held_usd) == (Decimal("0.6"), 0)


def test_a_run_shorter_than_a_minute_is_billed_a_minute(ledger: Ledger) -> None:
    hold(ledger, "a", price="3.6")
    record = ledger.settle("a", "i-0a", NOW, NOW + timedelta(seconds=5), Decimal("3.6"))
    assert record.cost_usd == Decimal("0.06")


def test_release_gives_back_exactly_the_estimate_once(ledger: Ledger) -> None:
    hold(ledger, "a", price="10")
    hold(ledger, "b", price="1.234567", hours=3)
    held = ledger.month_summary("2026-12").held_usd

    released = ledger.release("b")
    ledger.release("b")

    assert released is not None and released.state is HoldState.RELEASED
    assert held - ledger.month_summary("2026-12").held_usd == released.estimate_usd
    assert released.estimate_usd == estimate_usd(Decimal("1.234567"), 3 * HOUR)
    assert ledger.month_summary("2026-12").held_usd == Decimal("10")
    assert ledger.release("never-held") is None


def test_a_released_hold_can_be_opened_again_when_the_pod_is_retried(ledger: Ledger) -> None:
    hold(ledger, "a", price="10")
    ledger.release("a")
    again = hold(ledger, "a", price="20")

    assert again.state is HoldState.HELD and again.generation == 2
    assert ledger.month_summary("2026-12").held_usd == Decimal("20")


def test_a_released_pod_whose_instance_ran_after_all_is_still_charged(ledger: Ledger) -> None:
    hold(ledger, "a", price="3.6")
    ledger.release("a")
    ledger.settle("a", "i-0a", NOW, NOW + timedelta(seconds=100), Decimal("3.6"))

    summary = ledger.month_summary("2026-12")
    assert (summary.spent_usd, summary.held_usd) == (Decimal("0.1"), 0)


def test_settling_a_pod_that_never_held_says_so(ledger: Ledger) -> None:
    with pytest.raises(RecordNotFound, match="never held budget"):
        ledger.settle("ghost", "i-0a", NOW, NOW, Decimal("1"))


def test_a_runtime_killed_between_hold_and_launch_finds_its_hold(
    table: FakeLedgerTable, clock: Clock
) -> None:
    hold(ledger_on(table, clock), "a", price="10")
    hold(ledger_on(table, clock), "b", price="20")

    restarted = ledger_on(table, clock)
    found = restarted.find("a")
    assert found is not None and found.state is HoldState.HELD
    assert hold(restarted, "a", price="10") == found
    restarted.settle("a", "i-0a", NOW, NOW + timedelta(hours=1), Decimal("10"))
    restarted.release("b")

    summary = restarted.month_summary("2026-12")
    assert (summary.spent_usd, summary.held_usd) == (Decimal("10"), 0)


def test_a_pod_across_the_month_boundary_is_split_between_the_months(
    ledger: Ledger, clock: Clock
) -> None:
    clock.now = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    hold(ledger, "a", price="3.6", hours=4)
    launched = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    ended = datetime(2027, 1, 1, 1, 0, tzinfo=UTC)

    record = ledger.settle("a", "i-0a", launched, ended, Decimal("3.6"))

    december, january = ledger.month_summary("2026-12"), ledger.month_summary("2027-01")
    assert (december.spent_usd, december.held_usd) == (Decimal("1.8"), 0)
    assert (january.spent_usd, january.held_usd) == (Decimal("3.6"), 0)
    assert record.cost_usd == Decimal("5.4")
    assert record.spent_by_month == {"2026-12": Decimal("1.8"), "2027-01": Decimal("3.6")}
    entries = ledger.records(datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC))
    assert [(e.month, e.seconds) for e in entries] == [("2026-12", 1800), ("2027-01", 3600)]


def test_billed_parts_put_the_minute_minimum_in_the_launch_month() -> None:
    launched = datetime(2026, 12, 31, 23, 59, 50, tzinfo=UTC)
    assert billed_parts(launched, launched + timedelta(seconds=20)) == [
        ("2026-12", Decimal(50)),
        ("2027-01", Decimal(10)),
    ]


def test_the_summary_equals_the_sum_of_the_records(ledger: Ledger) -> None:
    for i, (namespace, price) in enumerate([("ml", "3.6"), ("ml", "7.2"), ("astro", "1.8")]):
        hold(ledger, f"p{i}", price=price, namespace=namespace, name=f"job{i}")
    ledger.settle("p0", "i-0", NOW, NOW + timedelta(seconds=777), Decimal("3.6"))
    ledger.release("p2")

    summary = ledger.month_summary("2026-12")

    assert summary.spent_usd == sum(p.spent_usd for p in summary.pods)
    assert summary.held_usd == sum(p.held_usd for p in summary.pods) == Decimal("7.2")
    for namespace in summary.namespaces:
        assert namespace.spent_usd == sum(p.spent_usd for p in namespace.pods)
        assert namespace.held_usd == sum(p.held_usd for p in namespace.pods)
    assert {n.namespace for n in summary.namespaces} == {"ml", "astro"}
    assert summary.limit_usd == Decimal("100")


def test_naive_times_are_refused(ledger: Ledger) -> None:
    hold(ledger, "a")
    with pytest.raises(ValueError, match="no time zone"):
        ledger.settle("a", "i-0a", datetime(2026, 12, 4), datetime(2026, 12, 5), Decimal("1"))


def test_a_hold_reaching_past_the_month_after_its_own_is_kept_out_of_both(
    table: FakeLedgerTable, clock: Clock
) -> None:
    # The longest bound (28 days and the runtime's 2 minutes' grace) from 23:59 on 31
    # January ends at 00:01 on 1 March in a year without 29 February.
    clock.now = datetime(2027, 1, 31, 23, 59, tzinfo=UTC)
    ledger = ledger_on(table, clock)
    bound = 28 * 24 * 3600 + 120
    ledger.hold(
        "long", "ml", "long", "m7i.large", "on-demand", Decimal("3.6"), bound, Decimal(5000)
    )

    # February keeps the rest of the bound from its start (its 28 days and March's minute).
    assert ledger.carried_into("2027-02").total_usd == Decimal("3.6") * 24 * 28 + Decimal("0.06")
    assert ledger.carried_into("2027-03").total_usd == Decimal("0.06")  # its one minute
