"""Budgets end to end: the runtime, the API emulator, the local AWS's ledger table and
prices, and the instance emulator running the real agent and its containers."""

from __future__ import annotations

from decimal import Decimal

from orca import tags
from orca.ledger import Ledger
from orca.ledger_records import HoldState
from orca_local.instances import InstanceEmulator
from tests.integration.runtime_fixtures import Burst, case, eventually
from tests.integration.test_main_job import finished, reasons


def ledger_of(burst: Burst) -> Ledger:
    assert burst.settings.budget is not None
    return Ledger.on(
        burst.aws,
        burst.settings.budget.ledger_table,
        cluster=burst.settings.cluster_name,
        department=burst.settings.department,
    )


def test_a_pod_runs_and_its_cost_lands_in_the_ledger_and_on_the_pod(
    burst: Burst, burst_emulator: InstanceEmulator
) -> None:
    burst.start()
    [manifest] = case("02-cpu-batch.yaml")
    created = burst.create(manifest)
    uid = created["metadata"]["uid"]
    ledger = ledger_of(burst)

    finished(burst, "biology", "genome-align-chunk-17")

    def settled() -> object:
        record = ledger.find(uid)
        return record if record is not None and record.state is HoldState.SETTLED else None

    record = eventually(settled, timeout=30, what="the pod settled in the ledger")
    [instance] = burst.instances(uid)
    assert record.instance_id == instance.instance_id
    assert record.launched_at == instance.launch_time
    assert record.cost_usd is not None and record.cost_usd > 0
    pod = eventually(
        lambda: (
            (p := burst.stored("biology", "genome-align-chunk-17"))["metadata"]["annotations"].get(
                tags.COST_ANNOTATION
            )
            and p
        ),
        what="the cost on the pod",
    )
    annotations = pod["metadata"]["annotations"]
    assert Decimal(annotations[tags.COST_ANNOTATION]) == record.cost_usd
    assert Decimal(annotations[tags.PRICE_ANNOTATION]) == record.settled_usd_per_hour
    assert "Cost" in reasons(burst, "biology", "genome-align-chunk-17")
    launching = next(
        e["message"]
        for e in burst.events("biology", "genome-align-chunk-17")
        if e["reason"] == "Launching"
    )
    assert "left this month" in launching
    summary = ledger.month_summary()
    assert summary.spent_usd == record.cost_usd and summary.held_usd == 0


def test_a_pod_over_the_budget_waits_and_never_launches(
    burst: Burst, burst_emulator: InstanceEmulator
) -> None:
    assert burst.settings.budget is not None
    burst.start(budget=burst.settings.budget.model_copy(update={"monthly_usd": Decimal("0.01")}))
    [manifest] = case("02-cpu-batch.yaml")
    created = burst.create(manifest)

    events = eventually(
        lambda: [
            e
            for e in burst.events("biology", "genome-align-chunk-17")
            if e["reason"] == "BudgetExceeded"
        ],
        what="a BudgetExceeded event",
    )

    assert events[0]["type"] == "Warning"
    assert "left of its $0.01 budget" in events[0]["message"]
    pod = burst.stored("biology", "genome-align-chunk-17")
    assert pod["status"]["phase"] == "Pending"
    assert tags.LAUNCH_ATTEMPT_ANNOTATION not in pod["metadata"].get("annotations", {})
    assert burst.instances(created["metadata"]["uid"]) == []
    assert ledger_of(burst).find(created["metadata"]["uid"]) is None


def test_a_pod_deleted_while_no_runtime_ran_has_its_hold_settled_after_a_restart(
    burst: Burst,
) -> None:
    burst.start()
    [manifest] = case("02-cpu-batch.yaml")
    uid = burst.create(manifest)["metadata"]["uid"]
    ledger = ledger_of(burst)
    eventually(
        lambda: (record := ledger.find(uid)) is not None and record.instance_id,
        what="the pod held and launched",
    )
    burst.stop()
    # Deleted for good while no runtime watched: no reconcile will ever see it go.
    burst.core.delete_namespaced_pod("genome-align-chunk-17", "biology", grace_period_seconds=0)

    burst.start()

    def settled() -> object:
        record = ledger.find(uid)
        return record if record is not None and record.state is HoldState.SETTLED else None

    record = eventually(settled, timeout=30, what="the orphaned hold settled")
    [instance] = burst.instances(uid)
    assert not instance.live
    assert record.instance_id == instance.instance_id and record.cost_usd is not None
    assert record.cost_usd > 0
    summary = ledger.month_summary()
    assert summary.held_usd == 0 and summary.spent_usd == record.cost_usd
