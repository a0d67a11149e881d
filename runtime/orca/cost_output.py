"""How ``orca cost`` shows a :class:`~orca.cost_report.CostReport`: rich tables or JSON.

The tables are for people: amounts in dollars and cents, one table of departments and
their namespaces against the budget, one of pods. The JSON is for programs, and its
field names are a contract (``"schema": "orca.cost/v1"``; a change of meaning gets a
new schema name):

- every amount is a string of USD with exactly six decimal places (the ledger's
  precision, 1e-6 USD), e.g. ``"12.345678"``, so no consumer rounds it through a float;
  ``seconds`` and ``usd_per_hour`` are such strings too;
- an amount that is not known (a budget no hold has recorded yet) is ``null``;
- times are ISO 8601 UTC strings ending in ``Z``, or ``null``;
- departments, namespaces and pods are sorted as the table shows them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from orca.cost_report import CostReport, DepartmentCost, MonthCost, NamespaceCost, PodCost
from orca.ledger_records import USD_QUANTUM, HoldState, cents, cost_words, iso, seconds

SCHEMA = "orca.cost/v1"
_NOTHING = "-"


# --- JSON ---


def amount(value: Decimal | None) -> str | None:
    """``"12.345678"``: an amount as the JSON carries it."""
    return None if value is None else f"{value.quantize(USD_QUANTUM):f}"


def report_json(report: CostReport) -> dict[str, Any]:
    period = report.period
    return {
        "schema": SCHEMA,
        "currency": "USD",
        "precision": amount(USD_QUANTUM),
        "generated_at": iso(report.generated_at),
        "period": {
            "label": period.label,
            "start": iso(period.start),
            "end": iso(period.end),
            "months": period.months,
            "whole_months": period.whole_months,
        },
        "totals": _figures(report),
        "departments": [_department_json(d) for d in report.departments],
    }


def _figures(of: CostReport | DepartmentCost | MonthCost) -> dict[str, str | None]:
    return {
        "spent_usd": amount(of.spent_usd),
        "held_usd": amount(of.held_usd),
        "committed_usd": amount(of.committed_usd),
        "budget_usd": amount(of.budget_usd),
        "left_usd": amount(of.left_usd),
    }


def _department_json(department: DepartmentCost) -> dict[str, Any]:
    return {
        "cluster": department.cluster,
        "department": department.department,
        "table": department.table,
        **_figures(department),
        "months": [_month_json(m) for m in department.months],
        "namespaces": [_namespace_json(n) for n in department.namespaces],
    }


def _month_json(month: MonthCost) -> dict[str, Any]:
    return {
        "month": month.month,
        **_figures(month),
        # What pods admitted the months before may still spend in this one.
        "carried_in_usd": amount(month.carried_usd),
    }


def _namespace_json(namespace: NamespaceCost) -> dict[str, Any]:
    return {
        "namespace": namespace.namespace,
        "spent_usd": amount(namespace.spent_usd),
        "held_usd": amount(namespace.held_usd),
        "committed_usd": amount(namespace.committed_usd),
        "share_usd": amount(namespace.share_usd),
        "left_usd": amount(namespace.left_usd),
        "pods": [_pod_json(p) for p in namespace.pods],
    }


def _pod_json(pod: PodCost) -> dict[str, Any]:
    return {
        "pod": pod.pod,
        "namespace": pod.namespace,
        "name": pod.name,
        "pod_uid": pod.pod_uid,
        "state": pod.state.value,
        "running": pod.running,
        "instance_type": pod.instance_type,
        "market": pod.market,
        "usd_per_hour": amount(pod.usd_per_hour),
        "instance_id": pod.instance_id,
        "launched_at": None if pod.launched_at is None else iso(pod.launched_at),
        "ended_at": None if pod.ended_at is None else iso(pod.ended_at),
        "seconds": amount(pod.seconds),
        "spent_usd": amount(pod.spent_usd),
        "held_usd": amount(pod.held_usd),
        "committed_usd": amount(pod.committed_usd),
        "accrued_usd": amount(pod.accrued_usd),
    }


# --- tables ---


def _money(value: Decimal | None) -> str:
    return _NOTHING if value is None else cents(value)


def _price(usd_per_hour: Decimal) -> str:
    """``$98.32``, ``$0.7141``: an hourly price to four places at most."""
    price = usd_per_hour.quantize(Decimal("0.0001")).normalize()
    if int(price.as_tuple().exponent) > -2:
        price = price.quantize(Decimal("0.01"))
    return f"${price:f}"


def _hours(pod: PodCost, report: CostReport) -> Decimal:
    """Billed hours in the period; for a running pod, the hours since its launch."""
    if pod.running and pod.launched_at is not None:
        return seconds(report.generated_at - pod.launched_at) / 3600
    return pod.seconds / 3600


def _status(pod: PodCost) -> str:
    """The ledger's state, with ``held`` told apart: running, or not launched yet."""
    if pod.running:
        return "running"
    return "launching" if pod.state is HoldState.HELD else pod.state.value


def print_report(report: CostReport, console: Console) -> None:
    """Both tables, or one "nothing spent" table for an empty period."""
    period = report.period
    where = ", ".join(f"{d.cluster}/{d.department}" for d in report.departments)
    console.print(_budget_table(report, f"ORCA cost for {period.label} ({where})"))
    if report.empty:
        console.print(
            f"Nothing spent or held in {period.label}: no pod of "
            f"{_names(report)} held budget or ran in it."
        )
        return
    console.print(_pod_table(report))
    notes = ["spent: settled per second from the instances' real launch and stop times"]
    notes.append("held: estimates of pods still running or launching (price x lifetime bound)")
    if any(p.running for d in report.departments for p in d.pods):
        notes.append("accrued: what a running pod has cost so far, inside its hold")
    if not period.whole_months:
        notes.append(
            f"holds, budgets and what is left are those of the whole of {', '.join(period.months)}"
        )
    for department in report.departments:
        for month in department.months:
            if month.carried_usd > 0:
                notes.append(
                    f"left: {department.department}'s {month.month} also keeps "
                    f"{cents(month.carried_usd)} for pods admitted the month before, which "
                    "may still spend it"
                )
    if report.budget_usd is None:
        notes.append("a budget shows once a hold has been checked against it in the month")
    console.print(Text("\n".join(notes), style="dim"))


def _names(report: CostReport) -> str:
    names = [d.department for d in report.departments]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _budget_table(report: CostReport, title: str) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("department / namespace")
    for name in ("spent", "held", "committed", "budget", "left"):
        table.add_column(name, justify="right")

    for department in report.departments:
        table.add_row(
            Text(department.department, style="bold"),
            cost_words(department.spent_usd),
            cents(department.held_usd),
            cost_words(department.committed_usd),
            _money(department.budget_usd),
            _money(department.left_usd),
        )
        for namespace in department.namespaces:
            table.add_row(
                f"  {namespace.namespace}",
                cost_words(namespace.spent_usd),
                cents(namespace.held_usd),
                cost_words(namespace.committed_usd),
                _money(namespace.share_usd),
                _money(namespace.left_usd),
            )
        if not department.namespaces:
            table.add_row(Text("  nothing spent or held", style="dim"))

    if len(report.departments) > 1:
        table.add_section()
        table.add_row(
            Text("total", style="bold"),
            cost_words(report.spent_usd),
            cents(report.held_usd),
            cost_words(report.committed_usd),
            _money(report.budget_usd),
            _money(report.left_usd),
        )
    return table


def _pod_table(report: CostReport) -> Table:
    table = Table(title="Pods", box=box.SIMPLE_HEAD, title_justify="left")
    pods = [(d, p) for d in report.departments for p in d.pods]
    # Only a running pod has accrued anything beyond what it spent.
    accrued = any(p.running for _, p in pods)
    # A narrow terminal wraps a long pod name rather than cutting it short; the figures
    # keep their width.
    table.add_column("pod", overflow="fold", ratio=2)
    table.add_column("instance", overflow="fold", ratio=1)
    figures = ("$/h", "state", "hours", *(("accrued",) if accrued else ()), "spent", "held")
    for name in figures:
        table.add_column(name, justify="left" if name == "state" else "right", no_wrap=True)
    several = len(report.departments) > 1
    for department, pod in pods:
        where = f"{department.department}: {pod.pod}" if several else pod.pod
        row = [
            where,
            f"{pod.instance_type} {pod.market}",
            _price(pod.usd_per_hour),
            _status(pod),
            f"{_hours(pod, report):.2f}",
            *((_money(pod.accrued_usd),) if accrued else ()),
            # A run of seconds costs less than a cent; it shows, rather than $0.00.
            cost_words(pod.spent_usd),
            cents(pod.held_usd),
        ]
        table.add_row(*row)
    return table
