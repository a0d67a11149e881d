"""The ``orca cost`` command: where it reads, what it says when it cannot, what it prints.

``orca.cli`` only registers it (:func:`add_parser`). It reads the ledger tables of one
or more departments (:class:`LedgerSource`, from flags or ``ORCA_*`` variables),
builds the report with :mod:`orca.cost_report`, and prints it with
:mod:`orca.cost_output` (and :mod:`orca.cost_plot` for ``--plot``, whose matplotlib
is an extra imported only then).

Where the ledger is: ``--table``, ``--cluster``, ``--department`` and ``--region``, each
falling back to the variable the runtime is configured with (``ORCA_LEDGER_TABLE``,
``ORCA_CLUSTER_NAME``, ``ORCA_DEPARTMENT``, ``ORCA_REGION``; the table then to the
runtime's ``ORCA_BUDGET__LEDGER_TABLE``, the region to boto3's
own ``AWS_REGION``/profile). Each department is its own Pulumi stack with its own
table, so ``--department physics=<table>`` names a department's table where one
``--table`` does not fit all. Credentials and the endpoint (``AWS_ENDPOINT_URL``) come
from boto3's usual chain.

Exit status: 0 with a report (an empty period is a report), 2 for a usage error
(a missing table name, a bad period), 1 when AWS refused or could not be reached; the
message says what was wrong and what to do.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import boto3
from rich.console import Console

from orca.aws.clients import AwsClients
from orca.aws.errors import AwsError, NotFoundError, UnreachableError, is_auth, is_denied
from orca.cost_output import print_report, report_json
from orca.cost_report import CostReport, MonthReader, PeriodError, build_report, period_for
from orca.ledger import Ledger

ENV_TABLE = "ORCA_LEDGER_TABLE"
# The name the runtime's settings give the same table (BudgetSettings.ledger_table), so a
# shell that sourced a department's runtime settings needs nothing more.
ENV_RUNTIME_TABLE = "ORCA_BUDGET__LEDGER_TABLE"
ENV_CLUSTER = "ORCA_CLUSTER_NAME"
ENV_DEPARTMENT = "ORCA_DEPARTMENT"
ENV_REGION = "ORCA_REGION"

DESCRIPTION = """\
Print what the department's burst pods cost in a period, per department, namespace
and pod, from the ORCA cost ledger (the stack's ledgerTable).

What is counted, kept apart:
  spent      settled cost, per second from each instance's real launch and stop times
             (60 s minimum, split at UTC month boundaries as AWS bills); a period shorter
             than a month counts the seconds of each run that fell inside it
  held       the estimates (hourly price x lifetime bound) of pods still running or about
             to launch, which count against their month's budget until they settle
  committed  spent + held, what a new launch is checked against
  budget     the month's limit as last checked by a hold; left = budget - committed

The period is a UTC calendar month (--month, default: the current one) or days
(--since/--until, --until inclusive); holds and budgets are those of the whole months
the period touches.

Where it reads (flag, else environment variable): --table/ORCA_LEDGER_TABLE (else
ORCA_BUDGET__LEDGER_TABLE, as the runtime reads it),
--cluster/ORCA_CLUSTER_NAME, --department/ORCA_DEPARTMENT, --region/ORCA_REGION (else
AWS_REGION). AWS credentials come from boto3's usual chain, AWS_ENDPOINT_URL included.
The caller needs dynamodb:Query and dynamodb:GetItem on each ledger table.
"""


class UsageError(Exception):
    """The command was asked something it cannot do; the message says what to change."""


@dataclass(frozen=True)
class LedgerSource:
    """One department's ledger: its table, in a region, for a cluster."""

    table: str
    cluster: str
    department: str
    region: str


OpenLedger = Callable[[LedgerSource, AwsClients], MonthReader]


def add_parser(commands: Any) -> None:
    """Register ``orca cost`` with the ``orca`` command's subparsers."""
    cost = commands.add_parser(
        "cost",
        help="report spend and holds per department, namespace and pod (table, JSON, PNG)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    period = cost.add_argument_group("period")
    period.add_argument("--month", metavar="YYYY-MM", help="a UTC month (default: this month)")
    period.add_argument("--since", metavar="YYYY-MM-DD", type=_date, help="first day counted")
    period.add_argument("--until", metavar="YYYY-MM-DD", type=_date, help="last day counted")

    where = cost.add_argument_group("ledger")
    where.add_argument("--table", help=f"the ledger table (default: ${ENV_TABLE})")
    where.add_argument("--cluster", help=f"the cluster name (default: ${ENV_CLUSTER})")
    where.add_argument(
        "--department",
        action="append",
        metavar="NAME[=TABLE]",
        help=f"a department; repeat for several, totalled (default: ${ENV_DEPARTMENT}); "
        "NAME=TABLE reads that department from its own table",
    )
    where.add_argument("--region", help=f"the AWS region (default: ${ENV_REGION}, $AWS_REGION)")

    output = cost.add_argument_group("output")
    output.add_argument(
        "--output",
        choices=("table", "json"),
        default="table",
        help="table for people (default), json for programs: amounts as strings of USD "
        "with six decimals",
    )
    output.add_argument(
        "--plot",
        metavar="FILE.png",
        type=Path,
        help="also draw the month's spend against the budget to FILE.png",
    )
    cost.set_defaults(handler=_handler)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD") from e


def _handler(args: argparse.Namespace) -> int:
    return run(args, out=sys.stdout, err=sys.stderr, environ=os.environ)


def run(
    args: argparse.Namespace,
    *,
    out: IO[str],
    err: IO[str],
    environ: Mapping[str, str],
    now: datetime | None = None,
    open_ledger: OpenLedger | None = None,
) -> int:
    """Run ``orca cost`` with parsed ``args``; returns the exit status."""
    now = now or datetime.now(UTC)
    try:
        period = period_for(now, args.month, args.since, args.until)
        if args.plot is not None and len(period.months) != 1:
            raise UsageError(
                f"--plot draws one month, and {period.label} touches {', '.join(period.months)}: "
                "pass --month, or --since/--until inside one month"
            )
        sources = ledger_sources(args, environ)
    except (PeriodError, UsageError) as e:
        err.write(f"orca cost: {e}\n")
        return 2

    # One set of clients per region; every department's ledger reads through them.
    clients: dict[str, AwsClients] = {}
    source = sources[0]
    try:
        ledgers: list[tuple[str, MonthReader]] = []
        for source in sources:
            if source.region not in clients:
                clients[source.region] = AwsClients(
                    source.region, retry_mode="standard", max_attempts=3
                )
            opener = open_ledger or _open_ledger
            ledgers.append((source.table, opener(source, clients[source.region])))
        report = build_report(ledgers, period, now)
    except AwsError as e:
        err.write(f"orca cost: {explain(e, source)}\n")
        return 1
    finally:
        for made in clients.values():
            made.close()

    _print(report, args.output, out)
    if args.plot is not None:
        return _plot(report, args.plot, now, err)
    return 0


def _open_ledger(source: LedgerSource, clients: AwsClients) -> MonthReader:
    return Ledger.on(clients, source.table, cluster=source.cluster, department=source.department)


def ledger_sources(args: argparse.Namespace, environ: Mapping[str, str]) -> list[LedgerSource]:
    """The departments' ledgers from the flags, else the runtime's ``ORCA_*`` variables."""
    cluster = args.cluster or environ.get(ENV_CLUSTER)
    if not cluster:
        raise UsageError(
            f"no cluster: pass --cluster or set {ENV_CLUSTER} (the stack's clusterName, "
            "as on the instances' orca.research/cluster tag)"
        )
    region = args.region or environ.get(ENV_REGION) or boto3.Session().region_name
    if not region:
        raise UsageError(f"no region: pass --region or set {ENV_REGION} (or AWS_REGION)")

    named: Sequence[str] = args.department or (
        [environ[ENV_DEPARTMENT]] if environ.get(ENV_DEPARTMENT) else []
    )
    if not named:
        raise UsageError(
            f"no department: pass --department (more than once for several) or set {ENV_DEPARTMENT}"
        )
    default_table = args.table or environ.get(ENV_TABLE) or environ.get(ENV_RUNTIME_TABLE)
    sources = []
    for text in named:
        department, _, table = text.partition("=")
        table = table or default_table or ""
        if not department or not table:
            raise UsageError(
                f"no ledger table for department {department or text!r}: pass --table, set "
                f"{ENV_TABLE}, or give --department {department or 'NAME'}=TABLE; the table "
                "is the stack's ledgerTable output (`pulumi stack output ledgerTable`)"
            )
        sources.append(LedgerSource(table, cluster, department, region))
    if len({s.department for s in sources}) != len(sources):
        raise UsageError("a department is named twice; each is counted once")
    return sources


def explain(error: AwsError, source: LedgerSource) -> str:
    """What went wrong reading ``source``, and what to do about it."""
    where = f"the ledger table {source.table!r} ({source.department}, {source.region})"
    if isinstance(error, NotFoundError):
        return (
            f"{where} does not exist in this account and region: pass --table or set "
            f"{ENV_TABLE} to the stack's ledgerTable output (`pulumi stack output ledgerTable` "
            f"in the {source.department} stack) and --region or {ENV_REGION} to its region "
            f"({error.aws_message})"
        )
    if is_denied(error):
        needs = "dynamodb:Query and dynamodb:GetItem on the table"
        if "kms" in error.aws_message.lower():
            needs = "kms:Decrypt on the stack's KMS key, which encrypts the table"
        return (
            f"not allowed to read {where}: the caller's IAM policy needs {needs} "
            f"(AWS said: {error.code}: {error.aws_message})"
        )
    if is_auth(error):
        return (
            f"no usable AWS credentials to read {where}: sign in (`aws sso login`, "
            f"AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and try again "
            f"({error.code}: {error.aws_message})"
        )
    if isinstance(error, UnreachableError):
        return (
            f"DynamoDB did not answer while reading {where}: check the network, --region, "
            f"and AWS_ENDPOINT_URL if one is set ({error})"
        )
    return f"reading {where} failed: {error}"


def _print(report: CostReport, output: str, out: IO[str]) -> None:
    if output == "json":
        out.write(json.dumps(report_json(report), indent=2) + "\n")
        return
    # Piped or captured output gets a width that fits the tables, and no colour codes.
    width = None if out.isatty() else 110
    print_report(report, Console(file=out, width=width, no_color=not out.isatty()))


def _plot(report: CostReport, path: Path, now: datetime, err: IO[str]) -> int:
    try:
        from orca.cost_plot import write_plot
    except ImportError as e:
        err.write(f"orca cost: --plot needs matplotlib ({e}): pip install 'orca-burst[report]'\n")
        return 2
    try:
        write_plot(report, path, now)
    except OSError as e:
        err.write(f"orca cost: cannot write the plot to {path}: {e}\n")
        return 1
    err.write(f"orca cost: wrote the plot of {report.period.months[0]} to {path}\n")
    return 0
