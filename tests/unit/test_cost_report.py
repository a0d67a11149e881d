"""orca cost over the ledger's fake table: figures equal the ledger, JSON, periods, errors."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orca.aws.clients import AwsClients
from orca.aws.errors import error_for_code
from orca.cli import build_parser
from orca.cost_command import LedgerSource, run
from orca.cost_output import print_report
from orca.cost_report import (
    CostReport,
    MonthReader,
    PeriodError,
    build_report,
    daily_spend,
    period_for,
    spent_in,
)
from orca.ledger import Ledger
from orca.ledger_records import HoldState, PodEntry
from tests.fakes.ledger_table import FakeLedgerTable

NOW = datetime(2026, 12, 20, 12, 0, tzinfo=UTC)
HOUR = 3600
ENV = {
    "ORCA_CLUSTER_NAME": "campus",
    "ORCA_DEPARTMENT": "physics",
    "ORCA_LEDGER_TABLE": "ledger",
    "ORCA_REGION": "us-east-1",
}


def ledger_for(table: FakeLedgerTable, department: str) -> Ledger:
    return Ledger(
        table, cluster="campus", department=department, clock=lambda: NOW, sleep=lambda _: None
    )


def hold(
    ledger: Ledger, uid: str, namespace: str, price: str, hours: int = 4, limit: str = "500"
) -> None:
    ledger.hold(
        uid,
        namespace,
        f"job-{uid}",
        "g6e.xlarge",
        "spot",
        Decimal(price),
        hours * HOUR,
        Decimal(limit),
        namespace_limit_usd=Decimal("300") if namespace == "ml" else None,
        month="2026-12",
    )


def run_for(
    start: datetime, hours: float, ledger: Ledger, uid: str, price: str
) -> tuple[datetime, datetime]:
    end = start + timedelta(hours=hours)
    ledger.launched(uid, f"i-{uid}", start)
    ledger.settle(uid, f"i-{uid}", start, end, Decimal(price))
    return start, end


@pytest.fixture
def table() -> FakeLedgerTable:
    return FakeLedgerTable("ledger")


@pytest.fixture
def physics(table: FakeLedgerTable) -> Ledger:
    """Two namespaces: settled pods, a running pod, a launching pod, a released one."""
    ledger = ledger_for(table, "physics")
    for uid, namespace, price in [("a", "ml", "3.6"), ("b", "ml", "1.8"), ("c", "astro", "0.72")]:
        hold(ledger, uid, namespace, price)
    run_for(datetime(2026, 12, 3, 9, tzinfo=UTC), 2, ledger, "a", "3.6")
    run_for(datetime(2026, 12, 10, 23, tzinfo=UTC), 2.5, ledger, "b", "1.8")
    run_for(datetime(2026, 12, 15, 8, 30, tzinfo=UTC), 0.25, ledger, "c", "0.72")
    hold(ledger, "d", "ml", "3.6")
    ledger.launched("d", "i-d", datetime(2026, 12, 20, 10, tzinfo=UTC))
    hold(ledger, "e", "astro", "2")
    hold(ledger, "f", "astro", "5")
    ledger.release("f")
    return ledger


@pytest.fixture
def biology(table: FakeLedgerTable) -> Ledger:
    ledger = ledger_for(table, "biology")
    hold(ledger, "g", "genomics", "0.5", limit="200")
    run_for(datetime(2026, 12, 1, 0, tzinfo=UTC), 10, ledger, "g", "0.5")
    return ledger


def december() -> Any:
    return period_for(NOW, "2026-12")


def report_of(*ledgers: Ledger, period: Any = None) -> CostReport:
    return build_report([("ledger", ledger) for ledger in ledgers], period or december(), NOW)


def cost(
    argv: list[str], ledgers: dict[str, Ledger], environ: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """``orca cost ARGV`` as the CLI runs it, reading the given departments' ledgers."""
    args = build_parser().parse_args(["cost", *argv])
    out, err = io.StringIO(), io.StringIO()
    opened: list[LedgerSource] = []

    def open_ledger(source: LedgerSource, clients: AwsClients) -> MonthReader:
        opened.append(source)
        return ledgers[source.department]

    status = run(
        args, out=out, err=err, environ=ENV if environ is None else environ, now=NOW,
        open_ledger=open_ledger,
    )  # fmt: skip
    return status, out.getvalue(), err.getvalue()


# --- the figures are the ledger's ---


def test_the_report_totals_equal_the_sum_of_the_ledger_records(physics: Ledger) -> None:
    records = physics.records(datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    (department,) = report_of(physics).departments

    assert department.spent_usd == sum(r.spent_usd for r in records) == Decimal("11.88")
    assert department.held_usd == sum(r.held_usd for r in records) == Decimal("22.4")
    by_namespace: dict[str, list[PodEntry]] = defaultdict(list)
    for record in records:
        by_namespace[record.namespace].append(record)
    assert {n.namespace: (n.spent_usd, n.held_usd) for n in department.namespaces} == {
        name: (sum(r.spent_usd for r in mine), sum(r.held_usd for r in mine))
        for name, mine in by_namespace.items()
    }
    counted = {r.pod_uid: (r.spent_usd, r.held_usd) for r in records if r.spent_usd or r.held_usd}
    assert {p.pod_uid: (p.spent_usd, p.held_usd) for p in department.pods} == counted


def test_the_report_agrees_with_the_month_summary_and_its_budget(physics: Ledger) -> None:
    summary = physics.month_summary("2026-12")
    (department,) = report_of(physics).departments

    assert (department.spent_usd, department.held_usd) == (summary.spent_usd, summary.held_usd)
    assert department.budget_usd == Decimal("500")
    assert department.left_usd == summary.left_usd == Decimal("500") - Decimal("34.28")
    ml = next(n for n in department.namespaces if n.namespace == "ml")
    assert ml.share_usd == Decimal("300")
    assert ml.left_usd == Decimal("300") - ml.committed_usd


def test_several_departments_are_totalled(physics: Ledger, biology: Ledger) -> None:
    report = report_of(physics, biology)

    assert [d.department for d in report.departments] == ["physics", "biology"]
    assert report.spent_usd == Decimal("11.88") + Decimal("5")
    assert report.held_usd == Decimal("22.4")
    assert report.budget_usd == Decimal("700")
    assert report.left_usd == Decimal("700") - report.committed_usd


def test_pods_are_told_apart_as_settled_running_and_launching(physics: Ledger) -> None:
    pods = {p.pod_uid: p for p in report_of(physics).departments[0].pods}

    assert set(pods) == {"a", "b", "c", "d", "e"}  # the released hold left nothing
    assert (pods["a"].spent_usd, pods["a"].held_usd, pods["a"].seconds) == (
        Decimal("7.2"),
        0,
        7200,
    )
    assert pods["d"].running and pods["d"].held_usd == Decimal("14.4")
    assert pods["d"].accrued_usd == Decimal("7.2")  # two hours so far, inside its hold
    assert not pods["e"].running and pods["e"].launched_at is None
    assert pods["c"].spent_usd == Decimal("0.18")


def test_a_spot_pod_shows_the_rate_it_is_billed_not_the_ceiling_it_holds(physics: Ledger) -> None:
    hold(physics, "s", "ml", "1.861")  # held at the on-demand ceiling
    physics.launched("s", "i-s", datetime(2026, 12, 20, 11, tzinfo=UTC), Decimal("0.5"))
    hold(physics, "t", "ml", "1.861")
    physics.launched("t", "i-t", datetime(2026, 12, 20, 9, tzinfo=UTC), Decimal("0.5"))
    physics.settle("t", "i-t", datetime(2026, 12, 20, 9, tzinfo=UTC), NOW, Decimal("0.5"))

    pods = {p.pod_uid: p for p in report_of(physics).departments[0].pods}

    running, settled = pods["s"], pods["t"]
    assert (running.usd_per_hour, running.accrued_usd) == (Decimal("0.5"), Decimal("0.5"))
    assert (settled.usd_per_hour, settled.spent_usd) == (Decimal("0.5"), Decimal("1.5"))


# --- periods ---


def test_the_default_period_is_the_current_month_in_utc() -> None:
    period = period_for(NOW)

    assert (period.start, period.end) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert period.label == "2026-12" and period.whole_months


def test_until_is_inclusive_and_since_alone_runs_through_today() -> None:
    days = period_for(NOW, since=date(2026, 12, 3), until=date(2026, 12, 10))
    since = period_for(NOW, since=date(2026, 12, 15))

    assert (days.start.day, days.end.day, days.label) == (3, 11, "2026-12-03 to 2026-12-10")
    assert since.end == datetime(2026, 12, 21, tzinfo=UTC)
    assert not days.whole_months


@pytest.mark.parametrize(
    ("month", "since", "until", "says"),
    [
        ("2026-13", None, None, "not a month"),
        ("2026-12", date(2026, 11, 30), None, "outside --month 2026-12"),
        (None, date(2026, 12, 10), date(2026, 12, 3), "is empty"),
    ],
)
def test_a_period_that_cannot_be_counted_says_why(
    month: str | None, since: date | None, until: date | None, says: str
) -> None:
    with pytest.raises(PeriodError, match=says):
        period_for(NOW, month, since, until)


def test_a_run_across_the_window_edge_counts_its_seconds_inside(physics: Ledger) -> None:
    # Pod b ran 23:00 on the 10th to 01:30 on the 11th: 1 h of its 2.5 h fell on the 10th.
    window = period_for(NOW, since=date(2026, 12, 10), until=date(2026, 12, 10))
    pods = {p.pod_uid: p for p in report_of(physics, period=window).departments[0].pods}

    assert pods["b"].spent_usd == Decimal("1.8")
    assert pods["b"].seconds == HOUR
    namespaces = {
        n.namespace: n for n in report_of(physics, period=window).departments[0].namespaces
    }
    assert namespaces["ml"].left_usd == Decimal("273.9")  # what the whole month's share leaves
    assert "a" not in pods  # ran on the 3rd; the holds of the month still count
    assert pods["d"].held_usd == Decimal("14.4")


def test_a_pod_across_a_month_boundary_is_one_line_in_a_two_month_period(
    table: FakeLedgerTable,
) -> None:
    ledger = ledger_for(table, "physics")
    hold(ledger, "x", "ml", "3.6")
    run_for(datetime(2026, 12, 31, 23, tzinfo=UTC), 3, ledger, "x", "3.6")
    both = period_for(NOW, since=date(2026, 12, 1), until=date(2027, 1, 31))

    (pod,) = report_of(ledger, period=both).departments[0].pods
    (january,) = report_of(ledger, period=period_for(NOW, "2027-01")).departments[0].pods

    assert (pod.spent_usd, pod.seconds) == (Decimal("10.8"), 3 * HOUR)
    assert january.spent_usd == Decimal("7.2")


def test_what_is_left_of_a_month_keeps_out_what_last_months_pods_may_spend_in_it(
    table: FakeLedgerTable,
) -> None:
    clock = [datetime(2026, 12, 31, 23, tzinfo=UTC)]
    ledger = Ledger(
        table, cluster="campus", department="physics", clock=lambda: clock[0],
        sleep=lambda _: None,
    )  # fmt: skip
    # Held at 23:00 on the 31st for 4 h at $1.80: 3 h of it ($5.40) may be spent in January.
    ledger.hold("late", "ml", "job-late", "g6e.xlarge", "on-demand", Decimal("1.8"), 4 * HOUR,
                Decimal(10), namespace_limit_usd=Decimal(8))  # fmt: skip
    clock[0] = datetime(2027, 1, 1, 0, 10, tzinfo=UTC)
    ledger.hold("new", "ml", "job-new", "g6e.xlarge", "on-demand", Decimal("1.8"), HOUR,
                Decimal(10), namespace_limit_usd=Decimal(8))  # fmt: skip
    january = period_for(clock[0], "2027-01")

    (department,) = build_report([("ledger", ledger)], january, clock[0]).departments
    (ml,) = department.namespaces

    assert department.held_usd == Decimal("1.8")  # the late pod holds in December
    assert department.left_usd == Decimal(10) - Decimal("1.8") - Decimal("5.4")
    assert ml.left_usd == Decimal(8) - Decimal("1.8") - Decimal("5.4")
    status, out, _ = cost(["--month", "2027-01", "--output", "json"], {"physics": ledger})
    assert status == 0
    (month,) = json.loads(out)["departments"][0]["months"]
    assert (month["carried_in_usd"], month["left_usd"]) == ("5.400000", "2.800000")
    _, table, _ = cost(["--month", "2027-01"], {"physics": ledger})
    assert "physics's 2027-01 also keeps $5.40 for pods admitted the month before" in table

    ledger.launched("late", "i-late", datetime(2026, 12, 31, 23, 1, tzinfo=UTC))
    ledger.settle("late", "i-late", datetime(2026, 12, 31, 23, 1, tzinfo=UTC),
                  datetime(2027, 1, 1, 0, 1, tzinfo=UTC), Decimal("1.8"))  # fmt: skip
    (settled,) = build_report([("ledger", ledger)], january, clock[0]).departments
    # Settled, its real minute in January ($0.03) counts there instead.
    assert settled.left_usd == Decimal(10) - Decimal("1.8") - Decimal("0.03")


def test_a_pod_that_ran_at_no_cost_is_listed_and_a_hold_given_back_is_not(
    table: FakeLedgerTable,
) -> None:
    ledger = ledger_for(table, "physics")
    ledger.hold("blk", "ml", "in-a-block", "p5.48xlarge", "capacity-block", Decimal(0), HOUR,
                Decimal(500), month="2026-12")  # fmt: skip
    run_for(datetime(2026, 12, 2, 9, tzinfo=UTC), 2, ledger, "blk", "0")
    hold(ledger, "gone", "ml", "3.6")
    ledger.release("gone")

    (department,) = report_of(ledger).departments

    [pod] = department.pods
    assert (pod.name, pod.market, pod.spent_usd, pod.seconds) == (
        "in-a-block",
        "capacity-block",
        0,
        2 * HOUR,
    )


def test_a_minimum_billed_run_of_no_length_belongs_to_its_launch_moment() -> None:
    at = datetime(2026, 12, 5, 10, tzinfo=UTC)
    entry = PodEntry(
        "2026-12", "u", "ml", "p", "g6e.xlarge", "spot", Decimal(60), HoldState.SETTLED,
        Decimal(0), Decimal(1), Decimal(60), "i-1", at, at,
    )  # fmt: skip

    assert spent_in(entry, at, at + timedelta(days=1)) == (Decimal(1), Decimal(60))
    assert spent_in(entry, at + timedelta(seconds=1), at + timedelta(days=1)) == (0, 0)


def test_the_daily_curve_ends_at_the_months_spend(physics: Ledger) -> None:
    daily = daily_spend(physics.month_summary("2026-12"), NOW)

    assert len(daily.days) == 20 and daily.days[-1] == date(2026, 12, 20)
    assert daily.cumulative_usd[1] == 0 and daily.cumulative_usd[2] == Decimal("7.2")
    assert daily.cumulative_usd[9] == Decimal("7.2") + Decimal("1.8")  # b's first hour
    assert daily.cumulative_usd[10] == Decimal("7.2") + Decimal("4.5")
    assert daily.cumulative_usd[-1] == Decimal("11.88")
    assert list(daily.cumulative_usd) == sorted(daily.cumulative_usd)


# --- the command ---


def test_json_has_stable_fields_and_amounts_as_six_decimal_strings(physics: Ledger) -> None:
    status, out, _ = cost(["--month", "2026-12", "--output", "json"], {"physics": physics})
    report = json.loads(out)

    assert status == 0
    assert report["schema"] == "orca.cost/v1" and report["precision"] == "0.000001"
    assert report["period"] == {
        "label": "2026-12",
        "start": "2026-12-01T00:00:00Z",
        "end": "2027-01-01T00:00:00Z",
        "months": ["2026-12"],
        "whole_months": True,
    }
    assert report["totals"] == {
        "spent_usd": "11.880000",
        "held_usd": "22.400000",
        "committed_usd": "34.280000",
        "budget_usd": "500.000000",
        "left_usd": "465.720000",
    }
    (department,) = report["departments"]
    assert department["months"][0]["month"] == "2026-12"
    assert [n["namespace"] for n in department["namespaces"]] == ["astro", "ml"]
    pod = department["namespaces"][1]["pods"][0]
    assert set(pod) == {
        "pod", "namespace", "name", "pod_uid", "state", "running", "instance_type", "market",
        "usd_per_hour", "instance_id", "launched_at", "ended_at", "seconds", "spent_usd",
        "held_usd", "committed_usd", "accrued_usd",
    }  # fmt: skip
    assert (pod["pod"], pod["spent_usd"], pod["launched_at"]) == (
        "ml/job-a",
        "7.200000",
        "2026-12-03T09:00:00Z",
    )
    assert "[" not in out.replace('": [', "").replace("[]", "")  # no rich markup


def test_the_table_shows_departments_namespaces_and_pods(physics: Ledger, biology: Ledger) -> None:
    status, out, _ = cost(
        ["--month", "2026-12", "--department", "physics", "--department", "biology"],
        {"physics": physics, "biology": biology},
    )

    assert status == 0
    assert "ORCA cost for 2026-12 (campus/physics, campus/biology)" in out
    for text in ("physics", "  ml", "  genomics", "total", "$16.88", "$22.40", "$700.00"):
        assert text in out
    assert "physics: ml/job-d" in out and "running" in out and "launching" in out
    assert "\x1b[" not in out


def test_a_narrow_table_keeps_long_pod_names_whole_and_shows_a_cost_under_a_cent(
    table: FakeLedgerTable,
) -> None:
    ledger = ledger_for(table, "physics")
    name = "genome-align-chunk-17-of-a-very-long-series"
    ledger.hold("s", "biology", name, "m7i.large", "on-demand", Decimal("0.1008"), HOUR,
                Decimal(500), month="2026-12")  # fmt: skip
    run_for(datetime(2026, 12, 2, 9, tzinfo=UTC), 0, ledger, "s", "0.1008")  # EC2's 60 s
    out = io.StringIO()

    print_report(report_of(ledger), Console(file=out, width=80, no_color=True))

    printed = out.getvalue()
    assert all(len(line) <= 80 for line in printed.splitlines())
    assert name in "".join(line.split()[0] for line in printed.splitlines() if line.strip())
    assert "$0.0017" in printed


def test_an_empty_month_prints_a_nothing_spent_table(physics: Ledger) -> None:
    status, out, _ = cost(["--month", "2026-11"], {"physics": physics})
    status_json, out_json, _ = cost(
        ["--month", "2026-11", "--output", "json"], {"physics": physics}
    )

    assert status == status_json == 0
    assert "nothing spent" in out and "Nothing spent or held in 2026-11" in out
    (department,) = json.loads(out_json)["departments"]
    assert department["spent_usd"] == department["held_usd"] == "0.000000"
    assert department["budget_usd"] is None and department["namespaces"] == []


def test_without_a_table_the_error_names_the_flag_and_the_variable(physics: Ledger) -> None:
    environ = {k: v for k, v in ENV.items() if k != "ORCA_LEDGER_TABLE"}
    status, out, err = cost(["--department", "physics"], {"physics": physics}, environ)

    assert (status, out) == (2, "")
    assert "--table" in err and "ORCA_LEDGER_TABLE" in err and "ledgerTable" in err


def test_a_department_may_name_its_own_table(physics: Ledger, biology: Ledger) -> None:
    environ = {k: v for k, v in ENV.items() if k != "ORCA_LEDGER_TABLE"}
    status, out, _ = cost(
        ["--department", "physics=orca-physics", "--department", "biology=orca-bio", "--output",
         "json"],
        {"physics": physics, "biology": biology},
        environ,
    )  # fmt: skip

    assert status == 0
    tables = [d["table"] for d in json.loads(out)["departments"]]
    assert tables == ["orca-physics", "orca-bio"]


def test_the_department_comes_from_the_environment(physics: Ledger) -> None:
    status, out, _ = cost(["--output", "json"], {"physics": physics}, ENV)

    assert status == 0 and json.loads(out)["period"]["label"] == "2026-12"


def test_access_denied_names_the_iam_action(physics: Ledger) -> None:
    denied = error_for_code(
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: dynamodb:Query",
        context="querying campus/physics/month/2026-12 in the ledger ledger",
    )

    class Denied:
        cluster, department = "campus", "physics"

        def month_summary(self, month: str | None = None) -> Any:
            raise denied

    readers: dict[str, Any] = {"physics": Denied()}
    status, _, err = cost(["--department", "physics"], readers)

    assert status == 1
    assert "not allowed to read the ledger table 'ledger'" in err
    assert "needs dynamodb:Query and dynamodb:GetItem on the table" in err


def test_plot_of_a_period_of_two_months_is_refused_before_reading(physics: Ledger) -> None:
    status, _, err = cost(
        ["--since", "2026-11-20", "--until", "2026-12-05", "--plot", "x.png"], {"physics": physics}
    )

    assert status == 2 and "--plot draws one month" in err


def test_the_plot_of_an_empty_month_is_a_png(physics: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "november.png"
    status, _, err = cost(["--month", "2026-11", "--plot", str(path)], {"physics": physics})

    assert status == 0 and f"wrote the plot of 2026-11 to {path}" in err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_table_falls_back_to_the_runtimes_budget_setting(physics: Ledger) -> None:
    environ = {k: v for k, v in ENV.items() if k != "ORCA_LEDGER_TABLE"}
    environ["ORCA_BUDGET__LEDGER_TABLE"] = "orca-physics-ledger"
    status, out, _ = cost(["--output", "json"], {"physics": physics}, environ)

    assert status == 0 and json.loads(out)["departments"][0]["table"] == "orca-physics-ledger"
