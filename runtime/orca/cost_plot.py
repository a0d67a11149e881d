"""``orca cost --plot``: a month's spend against the budget, as a PNG.

The picture answers "how fast are we going, and how much is left": the settled spend
accumulated day by day (stacked per department when there are several), the held
estimates of running and launching pods as a shaded band on top of where the spend
stands now, reaching to the month's end (they are committed, not yet spent), and the
budget as a line. Everything comes from :func:`orca.cost_report.daily_spend`, so the
curve ends at the report's spent total and the band at its committed total.

matplotlib is the ``report`` extra (``pip install 'orca-burst[report]'``), imported
only here, with the non-interactive Agg backend: the command runs on servers and in
terminals with no display.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from orca.cost_report import CostReport, daily_spend
from orca.ledger_records import cents, month_start, next_month

_SPENT = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"]
_HELD = "#ff7f0e"
_BUDGET = "#d62728"


def _usd(value: Decimal | float) -> str:
    """Dollars for a label; ``$`` escaped, as matplotlib reads ``$...$`` as math."""
    return cents(Decimal(str(value))).replace("$", r"\$")


def write_plot(report: CostReport, path: Path, now: datetime) -> None:
    """Draw the report's one month to ``path`` (PNG); the report must cover one month."""
    (month,) = report.period.months
    first, after = month_start(month), month_start(next_month(month))
    figure = Figure(figsize=(10, 5.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()

    # Settled spend: one cumulative curve per department, stacked, from 0 on the 1st.
    series = [daily_spend(d.months[0].summary, now) for d in report.departments]
    ends = [_day_end(day, now, after) for day in series[0].days] if series else []
    x = [_at(first), *(_at(end) for end in ends)]
    stacked = [0.0] * len(x)
    for index, (department, daily) in enumerate(zip(report.departments, series, strict=True)):
        below = list(stacked)
        points = [Decimal(0), *daily.cumulative_usd]
        stacked = [b + float(v) for b, v in zip(stacked, points, strict=True)]
        label = f"{department.department} spent ({_usd(department.months[0].spent_usd)})"
        colour = _SPENT[index % len(_SPENT)]
        axes.fill_between(x, below, stacked, alpha=0.35, color=colour, lw=0)
        axes.plot(x, stacked, color=colour, lw=2, marker="o", ms=3, label=label)
    spent_now = stacked[-1] if x else 0.0

    # Holds are commitments against what is left of the month, from now to its end.
    held = sum((d.months[0].held_usd for d in report.departments), Decimal(0))
    committed = spent_now + float(held)
    # A month that has ended (or nearly) still shows its holds, over its last day and a half.
    since = min(max(now, first), after - timedelta(hours=36))
    if held:
        axes.fill_between(
            [_at(since), _at(after)],
            [spent_now] * 2,
            [committed] * 2,
            color=_HELD,
            alpha=0.25,
            hatch="//",
            edgecolor=_HELD,
            lw=0,
            label=f"held for running and launching pods ({_usd(held)})",
        )

    # The budget: the limit recorded with the month's holds, when there is one.
    budget = report.budget_usd
    if budget is not None:
        axes.axhline(float(budget), color=_BUDGET, ls="--", lw=2, label=f"budget ({_usd(budget)})")
    else:
        axes.text(
            0.01,
            0.97,
            "no budget recorded yet this month (it is recorded with the first hold)",
            transform=axes.transAxes,
            va="top",
            color=_BUDGET,
        )
    if first < now < after:
        axes.axvline(_at(now), color="#555555", lw=1, ls=":", label=f"now ({now:%d %b %H:%M} UTC)")

    # Axes a person reads without the legend: dollars up, days of the month across.
    top = max(float(budget or 0), committed, 1.0) * 1.12
    axes.set_xlim(_at(first), _at(after))
    axes.set_ylim(0, top)
    whole = top >= 20
    axes.yaxis.set_major_formatter(
        FuncFormatter(lambda v, _: f"\\${v:,.0f}" if whole else f"\\${v:,.2f}")
    )
    # matplotlib.dates has no type annotations.
    days = mdates.DayLocator(bymonthday=[1, 5, 10, 15, 20, 25])  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(days)
    axes.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))  # type: ignore[no-untyped-call]
    axes.set_xlabel("day of the month (UTC)")
    axes.set_ylabel("cumulative spend this month (USD)")
    axes.grid(True, alpha=0.3)
    names = ", ".join(f"{d.department}" for d in report.departments)
    cluster = ", ".join(sorted({d.cluster for d in report.departments}))
    axes.set_title(
        f"ORCA spend against budget: {names} ({cluster}), {first:%B %Y}\n"
        f"spent {_usd(report.spent_usd)}, held {_usd(report.held_usd)}, "
        f"left {_usd(report.left_usd) if report.left_usd is not None else 'unknown'}",
        loc="left",
    )
    axes.legend(loc="best", framealpha=0.9)
    figure.savefig(path, format="png")


def _at(moment: datetime) -> float:
    """A moment as matplotlib's date axis counts (days since its epoch)."""
    return float(mdates.date2num(moment))  # type: ignore[no-untyped-call]


def _day_end(day: date, now: datetime, after: datetime) -> datetime:
    """The moment a day's cumulative point stands for: its end, or now for today."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return min(start + timedelta(days=1), now, after)
