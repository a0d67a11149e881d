"""Budgets that hold: the reconciler with admission, against fakes of EC2, the pod API,
the ledger's table and the price sources."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from orca import status as pod_status
from orca import tags
from orca.admission import CAP_RETRY_SECONDS, Admission
from orca.aws.model import CapacityReservation
from orca.catalog import Catalog
from orca.contract import resolve_launch
from orca.ledger import Ledger
from orca.ledger_records import HoldState
from orca.metrics import Metrics
from orca.pricing import Prices
from orca.settings import BudgetSettings, NamespaceCaps
from orca.workqueue import WorkQueue
from tests.fakes.ec2 import FakeEc2
from tests.fakes.ledger_table import FakeLedgerTable
from tests.fakes.pricing import FakePriceList, FakeSpotHistory, client_error
from tests.unit.helpers import pod
from tests.unit.test_reconciler import Clock, FakePods, World, report

# m7i.large at 1.80 USD/h for 58 minutes, plus the 2 minutes the runtime gives the agent
# to stop at the deadline: a bound of exactly one hour, 1.80 USD.
PRICE = Decimal("1.80")
LIFETIME = "58m"


class RecordingQueue(WorkQueue):
    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(clock=clock)
        self.delays: list[tuple[str, float]] = []

    def add_after(self, key: str, delay: float) -> None:
        self.delays.append((key, delay))
        super().add_after(key, delay)


class LockedPods(FakePods):
    """The fake pod API, safe for many workers at once as the API server is."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def annotate(self, p: dict[str, Any], annotations: dict[str, str | None]) -> dict[str, Any]:
        with self.lock:
            return super().annotate(p, annotations)

    def patch_status(self, p: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return super().patch_status(p, status)


class BudgetWorld(World):
    """A reconciler wired to fakes, with a budget held in a fake ledger table."""

    def __init__(
        self, table: FakeLedgerTable | None = None, clock: Clock | None = None, **budget: Any
    ) -> None:
        super().__init__()
        self.clock = clock or self.clock
        self.ec2 = FakeEc2(clock=self.clock)
        self.table = table or FakeLedgerTable()
        self.ledger = Ledger(
            self.table,
            cluster="campus",
            department="physics",
            clock=self.clock,
            sleep=lambda _: None,
        )
        self.price_list = FakePriceList()
        self.price_list.set_price("m7i.large", "us-east-1", PRICE)
        self.spot = FakeSpotHistory()
        prices = Prices(self.price_list, self.spot, "us-east-1", clock=self.clock)
        self.budget = BudgetSettings(
            **{"ledger_table": "ledger", "monthly_usd": Decimal(100), **budget}
        )
        self.admission = Admission(
            self.budget, self.ledger, prices, Metrics("physics"), clock=self.clock
        )
        self.queue = RecordingQueue(clock=lambda: self.clock().timestamp())
        self.wire(self.admission)

    def restarted(self) -> BudgetWorld:
        """A new runtime on the same EC2, pods and ledger table, that knows nothing else."""
        again = BudgetWorld(self.table, self.clock, **self.budget.model_dump())
        again.ec2, again.pods = self.ec2, self.pods
        again.wire(again.admission)
        for stored in self.pods.pods.values():
            again.observed.remember_pod(copy.deepcopy(stored))
        return again


def budget_pod(uid: str = "0b6f1c2e-0000-4000-8000-000000000001", **annotations: str) -> Any:
    manifest = pod(
        {"orca.research/instance-type": "m7i.large", "orca.research/max-lifetime": LIFETIME}
        | annotations
    )
    manifest["metadata"]["uid"] = uid
    manifest["metadata"]["name"] = f"p-{uid[-4:]}"
    return manifest


def waiting_reason(stored: dict[str, Any]) -> str | None:
    """The reason kubectl's STATUS column shows for a Pending pod."""
    [container] = stored["status"]["containerStatuses"]
    reason: str | None = container["state"]["waiting"]["reason"]
    return reason


def warnings(world: World) -> list[str]:
    return [message for kind, _, message in world.events.recorded if kind == "Warning"]


def test_a_pod_whose_bound_cost_is_exactly_what_is_left_launches() -> None:
    world = BudgetWorld(monthly_usd=PRICE)
    uid = world.create(budget_pod())

    stored = world.reconcile(uid)

    assert world.ec2.calls["RunInstances"] == 1
    launching = next(m for _, r, m in world.events.recorded if r == "Launching")
    assert "at $1.80/h, holding $1.80 of the $1.80 left this month" in launching
    assert stored["metadata"]["annotations"][tags.PRICE_ANNOTATION] == "1.800000"
    record = world.ledger.find(uid)
    assert record is not None and record.state is HoldState.HELD
    assert record.instance_id == stored["metadata"]["annotations"][tags.INSTANCE_ID_ANNOTATION]
    assert world.ledger.month_summary().committed_usd == PRICE


def test_while_the_price_list_api_is_out_of_reach_the_launching_event_says_whose_price() -> None:
    world = BudgetWorld()
    world.price_list.fail(client_error("ServiceUnavailableException", "GetProducts"))
    uid = world.create(budget_pod())

    world.reconcile(uid)

    launching = next(m for _, r, m in world.events.recorded if r == "Launching")
    record = world.ledger.find(uid)
    assert record is not None and world.ec2.calls["RunInstances"] == 1
    # m7i.large's us-east-1 list price from the table shipped with ORCA, not the fake's $1.80.
    assert record.usd_per_hour != PRICE
    assert "the us-east-1 list price shipped with ORCA" in launching
    assert "ServiceUnavailableException" in launching


def test_a_pod_that_would_cross_the_budget_by_one_cent_waits_and_nothing_launches() -> None:
    world = BudgetWorld(monthly_usd=PRICE - Decimal("0.01"))
    uid = world.create(budget_pod())

    stored = world.reconcile(uid)

    assert world.ec2.calls["RunInstances"] == 0
    assert stored["status"]["phase"] == "Pending"
    assert waiting_reason(stored) == "BudgetExceeded"
    [message] = warnings(world)
    assert "would hold $1.80, but the physics department has $1.79 left" in message
    assert "The pod waits; ORCA tries again every 300 s and when the month resets" in message
    assert tags.LAUNCH_ATTEMPT_ANNOTATION not in stored["metadata"]["annotations"]
    assert world.queue.delays == [(uid, 300.0)]
    assert world.ledger.find(uid) is None


def test_a_refused_pod_fails_when_the_department_says_fail() -> None:
    world = BudgetWorld(monthly_usd=Decimal(1), when_refused="fail")
    uid = world.create(budget_pod())

    stored = world.reconcile(uid)

    assert world.ec2.calls["RunInstances"] == 0
    assert stored["status"]["phase"] == "Failed"
    assert stored["status"]["reason"] == "BudgetExceeded"
    assert "ORCA_BUDGET__WHEN_REFUSED=fail" in stored["status"]["message"]
    assert world.queue.delays == []


def test_a_waiting_pod_is_tried_again_when_the_month_resets() -> None:
    world = BudgetWorld(monthly_usd=Decimal(1))
    world.clock.now = datetime(2026, 12, 31, 23, 58, tzinfo=UTC)
    uid = world.create(budget_pod())

    world.reconcile(uid)

    [(_, delay)] = world.queue.delays
    assert delay == pytest.approx(125.0)


def test_a_namespace_share_limits_its_pods_within_the_department_budget() -> None:
    world = BudgetWorld(monthly_usd=Decimal(3), namespace_shares={"default": Decimal(50)})
    uid = world.create(budget_pod())

    world.reconcile(uid)

    assert world.ec2.calls["RunInstances"] == 0
    [message] = warnings(world)
    assert "namespace default has $1.50 left of its $1.50 share" in message


FIRST, SECOND = "0b6f1c2e-0000-4000-8000-00000000000a", "0b6f1c2e-0000-4000-8000-00000000000b"


def test_a_pod_past_its_namespaces_instance_cap_waits_until_one_ends() -> None:
    world = BudgetWorld(namespace_caps={"default": NamespaceCaps(instances=1)})
    first, second = world.create(budget_pod(FIRST)), world.create(budget_pod(SECOND))

    world.reconcile(first)
    waiting = world.reconcile(second)
    held_while_waiting = world.ledger.find(second)
    world.clock.now += timedelta(minutes=10)
    world.ec2.set_state(world.instance_of(first).instance_id, "terminated")
    world.observed.forget_pod(first)
    world.reconcile(first)  # gone: settled, its hold no longer open
    world.reconcile(second)

    assert waiting_reason(waiting) == "NamespaceCapReached"
    assert "namespace default runs (or is launching) 1 of its 1 instances" in warnings(world)[0]
    assert held_while_waiting is None
    assert world.instance_of(second).instance_type == "m7i.large"
    assert (second, CAP_RETRY_SECONDS) in world.queue.delays


def test_a_gpu_cap_counts_the_gpus_of_the_namespaces_pods_and_leaves_others_alone() -> None:
    world = BudgetWorld(namespace_caps={"default": NamespaceCaps(gpus=1)})
    world.price_list.set_price("g6e.xlarge", "us-east-1", Decimal("1.861"))
    gpu = {"orca.research/instance-type": "g6e.xlarge"}
    first, second = world.create(budget_pod(FIRST, **gpu)), world.create(budget_pod(SECOND, **gpu))
    cpu = world.create(budget_pod("0b6f1c2e-0000-4000-8000-00000000000c"))

    world.reconcile(first)
    refused = world.reconcile(second)
    world.reconcile(cpu)

    assert waiting_reason(refused) == "NamespaceCapReached"
    assert "1 of its 1 GPUs, and g6e.xlarge has 1" in warnings(world)[0]
    assert world.ec2.calls["RunInstances"] == 2  # the first GPU pod and the CPU pod


def test_a_pod_admitted_late_in_a_month_keeps_its_part_of_the_next_month_free() -> None:
    world = BudgetWorld(monthly_usd=Decimal(10))
    world.clock.now = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    # Held in December for 4h02m ($7.26): 3h02m of it ($5.46) may be spent in January.
    late = world.create(budget_pod(FIRST, **{"orca.research/max-lifetime": "4h"}))
    world.reconcile(late)
    world.clock.now = datetime(2027, 1, 1, 0, 10, tzinfo=UTC)

    januarys = [f"0b6f1c2e-0000-4000-8000-00000000001{n}" for n in range(4)]
    for uid in januarys:  # each holds $1.80 for an hour
        world.create(budget_pod(uid))
        world.reconcile(uid)

    launched = [uid for uid in januarys if world.ledger.find(uid) is not None]
    assert len(launched) == 2  # $3.60 + $5.46 fits in $10; a third would not
    assert "$5.46 of it by pods launched the month before" in warnings(world)[-1]

    world.admission.sweep()
    registry = world.admission.metrics.registry
    remaining = registry.get_sample_value("orca_budget_remaining_usd", {"department": "physics"})
    assert remaining == pytest.approx(10 - 3.60 - 5.46)


def test_spot_holds_the_on_demand_price_that_bounds_the_bill_and_is_billed_the_zone_price() -> None:
    world = BudgetWorld(monthly_usd=PRICE)
    for zone in ("us-east-1a", "us-east-1b"):
        world.spot.set_price("m7i.large", zone, Decimal("0.60"), world.clock.now)
    uid = world.create(budget_pod(**{"orca.research/launch-type": "spot"}))

    stored = world.reconcile(uid)

    record = world.ledger.find(uid)
    assert record is not None and record.usd_per_hour == PRICE
    assert stored["metadata"]["annotations"][tags.PRICE_ANNOTATION] == "0.600000"


def test_a_spot_run_is_settled_at_the_zones_price_each_second_it_ran() -> None:
    world = BudgetWorld()
    launched_at = world.clock.now
    for zone in ("us-east-1a", "us-east-1b"):
        world.spot.set_price("m7i.large", zone, Decimal("0.60"), launched_at - timedelta(days=1))
    uid = world.create(budget_pod(**{"orca.research/launch-type": "spot"}))
    world.reconcile(uid)
    instance = world.instance_of(uid)
    zone = instance.availability_zone
    # An hour in, the zone's price rises by half; the other zone's change is not this run's.
    world.spot.set_price("m7i.large", zone, Decimal("0.90"), launched_at + timedelta(hours=1))
    other = "us-east-1b" if zone == "us-east-1a" else "us-east-1a"
    world.spot.set_price("m7i.large", other, Decimal("1.70"), launched_at + timedelta(minutes=1))
    world.clock.now = launched_at + timedelta(hours=2)

    world.observed.offer_report(report(uid, instance.instance_id, 1, "Succeeded", 0), "r1")
    world.reconcile(uid)
    stored = world.reconcile(uid)

    record = world.ledger.find(uid)
    assert record is not None and record.cost_usd == Decimal("1.50")  # $0.60 + $0.90
    assert stored["metadata"]["annotations"][tags.COST_ANNOTATION] == "1.500000"
    assert record.settled_usd_per_hour == Decimal("0.75")


def test_a_spot_run_whose_price_history_cannot_be_read_is_settled_at_its_launch_price(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = BudgetWorld()
    launched_at = world.clock.now
    for zone in ("us-east-1a", "us-east-1b"):
        world.spot.set_price("m7i.large", zone, Decimal("0.60"), launched_at)
    uid = world.create(budget_pod(**{"orca.research/launch-type": "spot"}))
    world.reconcile(uid)
    instance = world.instance_of(uid)
    # The price moved, but the history cannot be read when the run ends.
    world.spot.set_price(
        "m7i.large", instance.availability_zone, Decimal("0.90"), launched_at + timedelta(hours=1)
    )
    world.clock.now += timedelta(hours=2)
    world.spot.fail(client_error("RequestLimitExceeded", "DescribeSpotPriceHistory"))

    world.observed.offer_report(report(uid, instance.instance_id, 1, "Succeeded", 0), "r1")
    world.reconcile(uid)
    world.reconcile(uid)

    record = world.ledger.find(uid)
    assert record is not None and record.cost_usd == Decimal("1.20")  # 2 h at $0.60
    assert any(
        "could not be read" in r.getMessage()
        and "settled at the price noted at its launch" in r.getMessage()
        for r in caplog.records
    )


def test_a_waiting_spot_pod_whose_max_price_was_raised_holds_at_the_new_price() -> None:
    world = BudgetWorld()
    # Below m7i.large's shipped on-demand $0.1008/h, the ceiling the contract allows.
    spot = {"orca.research/launch-type": "spot", "orca.research/max-spot-price": "0.05"}
    world.ec2.fail_next("RunInstances", "SpotMaxPriceTooLow", times=2)
    uid = world.create(budget_pod(**spot))
    world.reconcile(uid)
    world.reconcile(uid)  # too low in both zones: it waits, holding at $0.05/h

    stored = world.pods.pods[uid]
    stored["metadata"]["annotations"]["orca.research/max-spot-price"] = "0.09"
    world.observed.remember_pod(copy.deepcopy(stored))
    world.clock.now += timedelta(seconds=1)  # its wait for capacity is over
    world.reconcile(uid)

    record = world.ledger.find(uid)
    assert record is not None and (record.usd_per_hour, record.generation) == (
        Decimal("0.09"),
        2,
    )
    request = world.ec2.request_of(world.instance_of(uid).instance_id)
    assert request.max_spot_price == Decimal("0.09")
    assert world.ledger.month_summary().committed_usd == record.estimate_usd


def test_a_restarted_runtime_settles_a_spot_pod_at_the_rate_noted_at_its_launch() -> None:
    world = BudgetWorld()
    for zone in ("us-east-1a", "us-east-1b"):
        world.spot.set_price("m7i.large", zone, Decimal("0.60"), world.clock.now)
    uid = world.create(budget_pod(**{"orca.research/launch-type": "spot"}))
    world.reconcile(uid)
    restarted = world.restarted()
    world.clock.now += timedelta(minutes=30)
    world.ec2.set_state(world.instance_of(uid).instance_id, "terminated")

    restarted.reconciler.spend.settle(uid, None)  # as the garbage collector asks

    settled = world.ledger.find(uid)
    assert settled is not None and settled.state is HoldState.SETTLED
    assert (settled.settled_usd_per_hour, settled.cost_usd) == (Decimal("0.6"), Decimal("0.3"))


def test_a_hold_without_an_instance_held_long_before_ec2_could_list_it_is_charged() -> None:
    world = BudgetWorld()
    uid = world.create(budget_pod())
    # A runtime that died between RunInstances and noting the instance, long ago.
    world.admission.admit(world.pods.pods[uid], _spec_of(world, uid), timedelta(hours=1))
    world.clock.now += timedelta(hours=3)

    world.restarted().reconciler.spend.settle(uid, None)

    settled = world.ledger.find(uid)
    assert settled is not None and settled.state is HoldState.SETTLED
    assert settled.cost_usd == PRICE  # its whole bound: the most it could have cost


def _spec_of(world: BudgetWorld, uid: str) -> Any:
    return resolve_launch(
        world.pods.pods[uid], world.settings, Catalog.shipped(), ["us-east-1a", "us-east-1b"]
    )


def test_the_ledger_settles_what_the_instance_really_ran_and_the_pod_shows_it() -> None:
    world = BudgetWorld()
    uid = world.create(budget_pod())
    world.reconcile(uid)
    instance = world.instance_of(uid)
    world.clock.now += timedelta(minutes=30)

    world.observed.offer_report(report(uid, instance.instance_id, 1, "Succeeded", 0), "r1")
    world.reconcile(uid)
    stored = world.reconcile(uid)

    record = world.ledger.find(uid)
    assert record is not None and record.state is HoldState.SETTLED
    assert record.cost_usd == Decimal("0.90")
    assert record.ended_at == world.clock.now
    assert stored["metadata"]["annotations"][tags.COST_ANNOTATION] == "0.900000"
    cost = [m for _, r, m in world.events.recorded if r == "Cost"]
    assert cost == [f"{instance.instance_id} ran 30m at $1.80/h: cost $0.90"]
    summary = world.ledger.month_summary()
    assert (summary.spent_usd, summary.held_usd) == (Decimal("0.90"), Decimal(0))


def test_a_run_shorter_than_a_minute_shows_the_minimum_billed_and_a_cost_under_a_cent() -> None:
    world = BudgetWorld()
    world.price_list.set_price("m7i.large", "us-east-1", Decimal("0.1008"))
    uid = world.create(budget_pod())
    world.reconcile(uid)
    instance = world.instance_of(uid)
    world.clock.now += timedelta(seconds=2)

    world.observed.offer_report(report(uid, instance.instance_id, 1, "Succeeded", 0), "r1")
    world.reconcile(uid)
    stored = world.reconcile(uid)

    assert stored["metadata"]["annotations"][tags.COST_ANNOTATION] == "0.001680"
    cost = [m for _, r, m in world.events.recorded if r == "Cost"]
    assert cost == [
        f"{instance.instance_id} ran 2s (billed 1m, EC2's minimum) at $0.1008/h: cost $0.0017"
    ]


def test_a_pod_deleted_while_running_is_settled_once() -> None:
    world = BudgetWorld()
    uid = world.create(budget_pod())
    world.reconcile(uid)
    world.clock.now += timedelta(minutes=10)

    world.observed.forget_pod(uid)
    world.reconciler.reconcile(uid)
    world.reconciler.reconcile(uid)
    world.restarted().reconciler.reconcile(uid)

    assert world.ledger.month_summary().spent_usd == Decimal("0.30")
    assert world.table.calls["transact"] == 3  # hold, launched, settle


def test_an_instance_whose_pod_is_gone_is_settled_from_the_instance_alone() -> None:
    world = BudgetWorld()
    uid = world.create(budget_pod())
    world.reconcile(uid)
    instance_id = world.instance_of(uid).instance_id
    spend = world.restarted().reconciler.spend

    while_running = spend.settle_instance(uid, world.instance_of(uid))
    world.clock.now += timedelta(minutes=20)
    ended = world.ec2.set_state(instance_id, "terminated")
    settled = spend.settle_instance(uid, ended)
    again = spend.settle_instance(uid, ended)

    assert while_running is None
    assert settled is not None and settled.cost_usd == Decimal("0.60")
    assert again is None
    assert world.ledger.month_summary().spent_usd == Decimal("0.60")


def test_a_pod_whose_instance_ec2_no_longer_lists_is_settled_at_its_bound_not_released() -> None:
    world = BudgetWorld()
    uid = world.create(budget_pod())
    world.reconcile(uid)
    record = world.ledger.find(uid)
    assert record is not None and record.instance_id is not None
    # The runtime is down for three hours; EC2 shows a terminated instance for about one.
    world.clock.now += timedelta(hours=3)
    del world.ec2._instances[record.instance_id]
    world.observed.forget_pod(uid)

    world.reconciler.reconcile(uid)

    settled = world.ledger.find(uid)
    assert settled is not None and settled.state is HoldState.SETTLED
    assert settled.ended_at == record.held_at + timedelta(seconds=record.bound_seconds)
    # Billed to the end its hold allowed (58 min + 2 min grace at $1.80/h), never zero.
    assert settled.cost_usd == Decimal("1.80")
    assert world.ledger.month_summary().spent_usd == Decimal("1.80")


def test_a_launch_ec2_refuses_gives_its_hold_back() -> None:
    world = BudgetWorld(monthly_usd=PRICE)
    world.ec2.fail_next("RunInstances", "InvalidParameterCombination")
    uid = world.create(budget_pod())

    stored = world.reconcile(uid)

    assert stored["status"]["reason"] == "LaunchFailed"
    record = world.ledger.find(uid)
    assert record is not None and record.state is HoldState.RELEASED
    assert world.ledger.month_summary().committed_usd == 0


def test_a_pod_waiting_for_capacity_keeps_one_hold() -> None:
    world = BudgetWorld(monthly_usd=PRICE)
    world.ec2.fail_next("RunInstances", "InsufficientInstanceCapacity", times=2)
    uid = world.create(budget_pod())

    for _ in range(3):
        world.reconcile(uid)
        world.clock.now += timedelta(seconds=1)  # past a wait for capacity

    assert world.ec2.calls["RunInstances"] == 3
    assert world.instance_of(uid).state == "pending"
    assert world.ledger.month_summary().committed_usd == PRICE


def test_a_pod_with_no_capacity_for_its_type_in_any_zone_launches_its_fallback() -> None:
    world = BudgetWorld(monthly_usd=Decimal(100))
    world.price_list.set_price("m7i.xlarge", "us-east-1", Decimal("3.60"))
    for zone in ("us-east-1a", "us-east-1b"):
        world.ec2.set_capacity("m7i.large", zone, 0)
    uid = world.create(budget_pod(**{"orca.research/fallback-instance-types": "m7i.xlarge"}))

    for _ in range(3):  # m7i.large in one zone, then the other, then m7i.xlarge
        world.reconcile(uid)

    instance = world.instance_of(uid)
    assert instance.instance_type == "m7i.xlarge"
    assert instance.tags[tags.ATTEMPT] == "3"
    record = world.ledger.find(uid)
    assert record is not None and record.instance_type == "m7i.xlarge"
    # Held for what it launched, once: the first choice's hold was given back.
    assert world.ledger.month_summary().committed_usd == record.estimate_usd
    assert record.usd_per_hour == Decimal("3.60")
    assert "trying the fallback instance type m7i.xlarge" in warnings(world)[-1]


def test_a_pod_whose_types_all_have_no_capacity_waits_then_starts_again_from_its_own() -> None:
    world = BudgetWorld(monthly_usd=Decimal(100))
    for instance_type in ("m7i.large", "m7i.xlarge"):
        for zone in ("us-east-1a", "us-east-1b"):
            world.ec2.set_capacity(instance_type, zone, 0)
    uid = world.create(budget_pod(**{"orca.research/fallback-instance-types": "m7i.xlarge"}))

    for _ in range(4):
        stored = world.reconcile(uid)
    waiting = stored["status"]["containerStatuses"][0]["state"]["waiting"]
    world.ec2.set_capacity("m7i.large", "us-east-1a", 1)
    world.ec2.set_capacity("m7i.large", "us-east-1b", 1)
    world.reconcile(uid)  # brought back by its own writes: it waits
    waited = world.ec2.calls["RunInstances"]
    world.clock.now += timedelta(seconds=1)
    world.reconcile(uid)

    assert waiting["reason"] == "WaitingForCapacity"
    assert waiting["message"].startswith(
        "No on-demand capacity for any of m7i.large, m7i.xlarge in any of us-east-1a, "
        "us-east-1b; the pod waits"
    )
    assert waited == 4
    assert world.instance_of(uid).instance_type == "m7i.large"
    assert world.ec2.calls["RunInstances"] == 5


def test_a_pod_whose_instance_type_changed_while_it_waited_holds_for_what_it_launches() -> None:
    world = BudgetWorld(monthly_usd=Decimal(100))
    world.price_list.set_price("c7i.4xlarge", "us-east-1", Decimal("0.714"))
    world.ec2.fail_next("RunInstances", "InsufficientInstanceCapacity", times=2)
    uid = world.create(budget_pod())
    world.reconcile(uid)
    world.reconcile(uid)  # both zones full: it waits, holding for m7i.large

    # The researcher gives up on m7i.large while the pod waits.
    stored = world.pods.pods[uid]
    stored["metadata"]["annotations"]["orca.research/instance-type"] = "c7i.4xlarge"
    world.observed.remember_pod(copy.deepcopy(stored))
    world.clock.now += timedelta(seconds=1)  # its wait for capacity is over
    world.reconcile(uid)

    record = world.ledger.find(uid)
    assert world.instance_of(uid).instance_type == "c7i.4xlarge"
    assert record is not None and record.state is HoldState.HELD
    assert (record.instance_type, record.usd_per_hour) == ("c7i.4xlarge", Decimal("0.714"))
    assert record.generation == 2
    # The first hold was given back: only the new one counts.
    assert world.ledger.month_summary().committed_usd == record.estimate_usd


def _raise_once(method: Any, when: Any) -> Any:
    calls: list[Any] = []

    def maybe_die(*args: Any) -> Any:
        calls.append(args)
        if len(calls) == 1 and when(*args):
            raise ConnectionError("the runtime died here")
        return method(*args)

    return maybe_die


def test_a_runtime_killed_between_the_hold_and_the_intent_counts_the_pod_once() -> None:
    world = BudgetWorld(monthly_usd=PRICE)
    uid = world.create(budget_pod())
    world.pods.annotate = _raise_once(  # type: ignore[method-assign]
        world.pods.annotate, lambda p, a: tags.LAUNCH_ATTEMPT_ANNOTATION in a
    )
    with pytest.raises(ConnectionError):
        world.reconcile(uid)
    assert world.ledger.month_summary().held_usd == PRICE
    assert world.ec2.calls["RunInstances"] == 0

    restarted = world.restarted()
    restarted.reconcile(uid)

    assert world.ec2.calls["RunInstances"] == 1
    record = world.ledger.find(uid)
    assert record is not None and record.generation == 1 and record.instance_id
    assert world.ledger.month_summary().held_usd == PRICE


def test_a_runtime_killed_after_the_launch_adopts_the_instance_and_counts_it_once() -> None:
    world = BudgetWorld(monthly_usd=PRICE)
    uid = world.create(budget_pod())
    failing_once = _raise_once(world.bundles.put, lambda b, arn: True)
    world.bundles.put = failing_once  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        world.reconcile(uid)

    restarted = world.restarted()
    stored = restarted.reconcile(uid)

    assert world.ec2.calls["RunInstances"] == 1
    instance = world.instance_of(uid)
    assert stored["metadata"]["annotations"][tags.INSTANCE_ID_ANNOTATION] == instance.instance_id
    record = world.ledger.find(uid)
    assert record is not None and record.instance_id == instance.instance_id
    assert world.ledger.month_summary().held_usd == PRICE


def test_twenty_pods_at_once_against_a_budget_for_seven_launch_exactly_seven() -> None:
    world = BudgetWorld(monthly_usd=PRICE * 7 + Decimal("1.79"))
    world.pods = LockedPods()
    world.wire(world.admission)
    uids = [
        world.create(budget_pod(f"0b6f1c2e-0000-4000-8000-0000000000{n:02d}")) for n in range(20)
    ]
    start = threading.Barrier(len(uids))

    def admit(uid: str) -> None:
        start.wait()
        world.reconciler.reconcile(uid)

    threads = [threading.Thread(target=admit, args=(uid,)) for uid in uids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert world.ec2.calls["RunInstances"] == 7
    waiting = [waiting_reason(world.pods.pods[uid]) for uid in uids]
    assert waiting.count("BudgetExceeded") == 13
    summary = world.ledger.month_summary()
    assert summary.committed_usd == PRICE * 7
    assert len([p for p in summary.pods if p.state is HoldState.HELD]) == 7


def lowered(world: BudgetWorld, **budget: Any) -> BudgetWorld:
    """The same runtime after the department lowered its budget (a restart with settings)."""
    again = world.restarted()
    again.budget = again.budget.model_copy(update=budget)
    again.admission.budget = again.budget
    return again


def test_spend_past_the_hard_ceiling_stops_running_pods_and_launches() -> None:
    world = BudgetWorld(monthly_usd=Decimal(10))
    uid = world.create(budget_pod())
    world.reconcile(uid)
    now = lowered(world, monthly_usd=Decimal("0.50"), over_limit="stop")
    now.reconcile(uid)  # found running after the restart
    now.clock.now += timedelta(minutes=30)  # 0.90 spent: past the ceiling of 0.55

    state = now.admission.sweep()
    stored = now.reconcile(uid)

    assert state.over and state.stop
    assert stored["status"]["phase"] == "Failed"
    assert stored["status"]["reason"] == "BudgetExceeded"
    assert "past its hard ceiling $0.55 (10% over the budget)" in stored["status"]["message"]
    assert world.instance_of(uid).state == "terminated"
    now.reconcile(uid)
    assert world.ledger.month_summary().spent_usd == Decimal("0.90")

    other = now.create(budget_pod("0b6f1c2e-0000-4000-8000-000000000099"))
    now.reconcile(other)
    assert world.ec2.calls["RunInstances"] == 1
    assert "has spent $0.90 of its $0.50 budget" in warnings(now)[-1]


def test_the_hard_ceiling_stops_pods_even_when_the_carry_over_cannot_be_read() -> None:
    world = BudgetWorld(monthly_usd=Decimal(10))
    uid = world.create(budget_pod())
    world.reconcile(uid)
    now = lowered(world, monthly_usd=Decimal("0.50"), over_limit="stop")
    now.reconcile(uid)
    now.clock.now += timedelta(minutes=30)

    def unreadable(month: str) -> Any:
        raise ConnectionError("DynamoDB did not answer")

    now.ledger.carried_into = unreadable  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        now.admission.sweep()
    stored = now.reconcile(uid)

    assert stored["status"]["reason"] == "BudgetExceeded"
    assert world.instance_of(uid).state == "terminated"


def test_spend_past_the_budget_lets_running_pods_finish_and_says_so_once() -> None:
    world = BudgetWorld(monthly_usd=Decimal(10))
    uid = world.create(budget_pod())
    world.reconcile(uid)
    now = lowered(world, monthly_usd=Decimal("0.50"))
    instance = world.instance_of(uid)
    now.observed.offer_report(report(uid, instance.instance_id, 1, "Running", None), "r1")
    now.reconcile(uid)  # the report
    now.reconcile(uid)  # found running after the restart
    now.clock.now += timedelta(minutes=30)

    now.admission.sweep()
    now.reconcile(uid)
    stored = now.reconcile(uid)

    assert stored["status"].get("phase") != "Failed"
    assert world.instance_of(uid).state == "pending"
    [message] = warnings(now)
    assert "spent $0.90 of its $0.50 budget" in message
    assert "it runs to its end (ORCA_BUDGET__OVER_LIMIT=finish)" in message


def test_the_sweep_publishes_spend_burn_and_what_is_left() -> None:
    world = BudgetWorld(monthly_usd=Decimal(10))
    uid = world.create(budget_pod())
    world.reconcile(uid)
    world.clock.now += timedelta(minutes=20)

    world.admission.sweep()

    registry = world.admission.metrics.registry
    labels = {"department": "physics"}
    assert registry.get_sample_value("orca_budget_spent_usd", labels) == pytest.approx(0.60)
    assert registry.get_sample_value("orca_budget_remaining_usd", labels) == pytest.approx(8.20)
    assert registry.get_sample_value("orca_budget_burn_usd_per_hour", labels) == 1.8
    price = registry.get_sample_value(
        "orca_pod_price_usd_per_hour",
        {
            "namespace": "default",
            "pod": "p-0001",
            "instance_type": "m7i.large",
            "market": "on-demand",
        },
    )
    assert price == 1.8


# --- capacity blocks ---

BLOCK = "cr-0b10c0000000000b1"


def block_pod(uid: str = "0b6f1c2e-0000-4000-8000-0000000000b1") -> Any:
    return budget_pod(
        uid,
        **{
            "orca.research/launch-type": "capacity-block",
            "orca.research/capacity-reservation": BLOCK,
            "orca.research/availability-zone": "us-east-1a",
        },
    )


def define_block(world: BudgetWorld, start: datetime, end: datetime, **fields: Any) -> None:
    values: dict[str, Any] = {
        "reservation_id": BLOCK,
        "instance_type": "m7i.large",
        "availability_zone": "us-east-1a",
        "state": "active" if start <= world.clock.now < end else "scheduled",
        "reservation_type": "capacity-block",
        "total_count": 1,
        "available_count": 1,
        "start": start,
        "end": end,
        **fields,
    }
    world.ec2.reservations[BLOCK] = CapacityReservation(**values)


def test_a_pod_in_a_capacity_block_launches_into_it_costs_nothing_more_and_stops_in_time() -> None:
    world = BudgetWorld(monthly_usd=Decimal("0.01"))  # a budget no on-demand pod fits
    now = world.clock.now
    end = now + timedelta(hours=1)  # before the pod's max-lifetime would stop it
    define_block(world, now - timedelta(hours=1), end)
    uid = world.create(block_pod())

    stored = world.reconcile(uid)

    instance = world.instance_of(uid)
    request = world.ec2.request_of(instance.instance_id)
    assert (request.market, request.reservation.reservation_id) == ("capacity-block", BLOCK)
    # EC2 ends the block's instances 30 minutes before its end; the pod stops 2 minutes
    # before that, so that the runtime's grace past a deadline ends in time too.
    deadline = stored["metadata"]["annotations"][tags.DEADLINE_ANNOTATION]
    assert deadline == pod_status.timestamp(end - timedelta(minutes=32))
    record = world.ledger.find(uid)
    assert record is not None and (record.usd_per_hour, record.estimate_usd) == (0, 0)
    launching = [m for _, r, m in world.events.recorded if r == "Launching"]
    assert f"before EC2 ends the instances of capacity block {BLOCK}" in launching[0]
    assert "at no cost by the hour (the capacity block was paid for" in launching[0]
    [launched] = [m for _, r, m in world.events.recorded if r == "Launched"]
    assert launched.endswith(f"m7i.large capacity-block in us-east-1a (capacity block {BLOCK})")


def test_a_pod_waits_for_its_capacity_block_to_start() -> None:
    world = BudgetWorld()
    start = world.clock.now + timedelta(hours=3)
    define_block(world, start, start + timedelta(days=1))
    uid = world.create(block_pod())

    stored = world.reconcile(uid)

    waiting = stored["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "WaitingForCapacityBlock"
    assert f"starts at {pod_status.timestamp(start)}" in waiting["message"]
    assert world.ec2.calls["RunInstances"] == 0
    assert world.queue.delays[-1] == (uid, 300.0)
    world.reconcile(uid)  # its own writes bring it back: it is not looked at again yet
    assert world.ec2.calls["DescribeCapacityReservations"] == 1
    assert [r for _, r, _ in world.events.recorded].count("WaitingForCapacityBlock") == 1


def test_a_capacity_block_of_another_type_or_an_ending_one_fails_the_pod() -> None:
    world = BudgetWorld()
    now = world.clock.now
    define_block(
        world, now - timedelta(hours=1), now + timedelta(hours=3), instance_type="p5.48xlarge"
    )
    wrong = world.create(block_pod())
    failed = world.reconcile(wrong)
    define_block(world, now - timedelta(days=1), now + timedelta(minutes=35))
    late = world.create(block_pod("0b6f1c2e-0000-4000-8000-0000000000b2"))
    ended = world.reconcile(late)

    assert failed["status"]["reason"] == "InvalidAnnotation"
    assert "holds p5.48xlarge, and the pod asks for m7i.large" in failed["status"]["message"]
    assert ended["status"]["reason"] == "CapacityBlockEnded"
    assert (
        "ends at 2026-12-03T19:35:00Z, in 35 minutes (it is active)" in ended["status"]["message"]
    )
    assert "a capacity block with more than 42 minutes left" in ended["status"]["message"]
    assert world.ec2.calls["RunInstances"] == 0
    assert world.ledger.month_summary().committed_usd == 0


def test_a_capacity_block_pod_runs_past_the_budget_and_its_cost_says_why_it_is_nothing() -> None:
    world = BudgetWorld(monthly_usd=Decimal(10))
    define_block(world, world.clock.now - timedelta(hours=1), world.clock.now + timedelta(hours=5))
    in_block = world.create(block_pod())
    world.reconcile(in_block)
    spender = world.create(budget_pod())
    world.reconcile(spender)
    now = lowered(world, monthly_usd=Decimal("0.50"), over_limit="stop")
    for uid in (in_block, spender):
        instance_id = world.instance_of(uid).instance_id
        now.observed.offer_report(report(uid, instance_id, 1, "Running", None), f"r-{uid}")
        now.reconcile(uid)  # the report
        now.reconcile(uid)  # found running after the restart
    now.clock.now += timedelta(minutes=30)  # the spender's $0.90: past the ceiling of $0.55

    now.admission.sweep()
    stopped = now.reconcile(spender)
    kept = now.reconcile(in_block)
    instance = world.instance_of(in_block)
    now.observed.offer_report(report(in_block, instance.instance_id, 2, "Succeeded", 0), "r2")
    now.reconcile(in_block)
    finished = now.reconcile(in_block)

    assert stopped["status"]["reason"] == "BudgetExceeded"
    assert kept["status"].get("phase") != "Failed"  # stopping it would save nothing
    assert finished["status"]["phase"] == "Succeeded"
    cost = [m for _, r, m in now.events.recorded if r == "Cost" and instance.instance_id in m]
    assert cost == [
        f"{instance.instance_id} ran 30m in a capacity block, paid for when it was bought: "
        "cost $0.00"
    ]


def test_a_capacity_block_ec2_does_not_know_fails_the_pod_naming_what_is_allowed() -> None:
    world = BudgetWorld()
    uid = world.create(block_pod())

    stored = world.reconcile(uid)

    assert stored["status"]["reason"] == "InvalidAnnotation"
    message = stored["status"]["message"]
    assert f"EC2 knows no capacity reservation {BLOCK} in us-east-1" in message
    assert "the id of a capacity block the physics department bought, tagged" in message
    assert world.ec2.calls["RunInstances"] == 0
