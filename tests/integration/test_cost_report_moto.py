"""``orca cost`` against DynamoDB as the local AWS serves it, through ``orca.cli.main``.

Pods are held, launched, settled and released with the real :class:`~orca.ledger.Ledger`
over HTTP, in tables laid out as the envelope's; the command then reads them as research
computing staff would, with boto3's chain (``AWS_ENDPOINT_URL``, test credentials) and
the ``ORCA_*`` fallbacks, and its figures must be the ledger's to the micro-dollar.

The month is the one before the machine's clock, so every one of its days has passed and
the plot draws all of them, whatever the date the tests run on.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from orca.aws.clients import AwsClients
from orca.cli import main
from orca.ledger import Ledger
from orca.ledger_records import PodEntry, month_of, month_start, next_month
from orca_local.aws import LocalAwsProcess
from orca_local.envelope import ledger_table

pytestmark = pytest.mark.integration

HOUR = 3600
_FIRST_OF_THIS_MONTH = month_start(month_of(datetime.now(UTC)))
MONTH = month_of(_FIRST_OF_THIS_MONTH - timedelta(days=1))
START = month_start(MONTH)
_tables = itertools.count()


def create_table(clients: AwsClients) -> str:
    name = f"cost-ledger-{next(_tables)}"
    ledger_table(clients.client("dynamodb"), name)
    return name


@pytest.fixture
def orca_env(local_aws: LocalAwsProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a staff member's shell has: the endpoint, credentials, the ORCA_* settings."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "ORCA_DEPARTMENT", "ORCA_LEDGER_TABLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", local_aws.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("ORCA_CLUSTER_NAME", "campus")
    monkeypatch.setenv("ORCA_REGION", "us-east-1")


@pytest.fixture
def ledgers(aws_clients: AwsClients) -> Iterator[Callable[[str, str], Ledger]]:
    """A runtime's ledger of ``department`` on ``table``, its clock inside MONTH."""

    def make(table: str, department: str) -> Ledger:
        return Ledger.on(
            aws_clients,
            table,
            cluster="campus",
            department=department,
            clock=lambda: START + timedelta(days=9),
        )

    yield make


def spend(ledger: Ledger) -> None:
    """Two namespaces: settled pods, one across the month's end, a running one, a release."""
    budget, share = Decimal(400), Decimal(250)
    pods = [("a", "ml", "3.6"), ("b", "ml", "1.8"), ("c", "astro", "0.72"), ("d", "ml", "9")]
    for uid, namespace, price in [*pods, ("e", "astro", "2"), ("f", "astro", "5")]:
        ledger.hold(
            f"{ledger.department}-{uid}",
            namespace,
            f"job-{uid}",
            "g6e.xlarge",
            "on-demand",
            Decimal(price),
            6 * HOUR,
            budget,
            namespace_limit_usd=share if namespace == "ml" else None,
        )
    for (uid, _, price), (day, hours) in zip(
        pods[:3], [(2, 2.0), (11, 5.25), (20, 0.01)], strict=True
    ):
        launched = START + timedelta(days=day, hours=9)
        pod = f"{ledger.department}-{uid}"
        ledger.launched(pod, f"i-{uid}", launched)
        ledger.settle(pod, f"i-{uid}", launched, launched + timedelta(hours=hours), Decimal(price))
    last = month_start(next_month(MONTH)) - timedelta(hours=2)
    ledger.settle(f"{ledger.department}-d", "i-d", last, last + timedelta(hours=4), Decimal(9))
    ledger.launched(f"{ledger.department}-e", "i-e", START + timedelta(days=9))
    ledger.release(f"{ledger.department}-f")


def cost(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["cost", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def sums(entries: list[PodEntry]) -> tuple[str, str]:
    return (
        f"{sum((e.spent_usd for e in entries), Decimal(0)):.6f}",
        f"{sum((e.held_usd for e in entries), Decimal(0)):.6f}",
    )


@pytest.mark.usefixtures("orca_env")
def test_orca_cost_json_is_the_sum_of_the_ledgers_records(
    aws_clients: AwsClients,
    ledgers: Callable[[str, str], Ledger],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # physics in the table the environment names, biology in a table of its own.
    shared, own = create_table(aws_clients), create_table(aws_clients)
    monkeypatch.setenv("ORCA_LEDGER_TABLE", shared)
    physics, biology = ledgers(shared, "physics"), ledgers(own, "biology")
    spend(physics)
    spend(biology)

    status, out, err = cost(
        capsys,
        *("--month", MONTH, "--output", "json"),
        *("--department", "physics", "--department", f"biology={own}"),
    )

    assert (status, err) == (0, "")
    report = json.loads(out)
    end = month_start(next_month(MONTH))
    everything: list[PodEntry] = []
    for department, ledger in zip(report["departments"], [physics, biology], strict=True):
        records = ledger.records(START, end)
        everything += records
        assert (department["spent_usd"], department["held_usd"]) == sums(records)
        by_namespace: dict[str, list[PodEntry]] = defaultdict(list)
        for record in records:
            by_namespace[record.namespace].append(record)
        assert {
            n["namespace"]: (n["spent_usd"], n["held_usd"]) for n in department["namespaces"]
        } == {name: sums(mine) for name, mine in by_namespace.items()}
        pods = {p["pod_uid"]: p for n in department["namespaces"] for p in n["pods"]}
        assert {uid: (p["spent_usd"], p["held_usd"]) for uid, p in pods.items()} == {
            r.pod_uid: sums([r]) for r in records if r.spent_usd or r.held_usd
        }
        summary = ledger.month_summary(MONTH)
        assert department["budget_usd"] == f"{summary.limit_usd:.6f}" == "400.000000"
        assert department["left_usd"] == f"{summary.left_usd:.6f}"

    assert (report["totals"]["spent_usd"], report["totals"]["held_usd"]) == sums(everything)
    assert report["totals"]["budget_usd"] == "800.000000"
    # The pod across the month's end: 2 of its 4 hours at $9 fell in MONTH.
    physics_ml = report["departments"][0]["namespaces"][1]
    crossing = next(p for p in physics_ml["pods"] if p["name"] == "job-d")
    assert (crossing["spent_usd"], crossing["seconds"]) == ("18.000000", "7200.000000")


@pytest.mark.usefixtures("orca_env")
def test_orca_cost_plot_writes_a_png_of_the_month(
    aws_clients: AwsClients,
    ledgers: Callable[[str, str], Ledger],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    table = create_table(aws_clients)
    spend(ledgers(table, "physics"))
    path = tmp_path / "physics.png"

    status, out, err = cost(
        capsys, "--month", MONTH, "--table", table, "--department", "physics", "--plot", str(path)
    )

    assert status == 0 and f"wrote the plot of {MONTH} to {path}" in err
    assert f"ORCA cost for {MONTH} (campus/physics)" in out and "ml/job-a" in out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert (image.format, image.size) == ("PNG", (1000, 560))


@pytest.mark.usefixtures("orca_env")
def test_an_empty_month_prints_nothing_spent(
    aws_clients: AwsClients, capsys: pytest.CaptureFixture[str]
) -> None:
    table = create_table(aws_clients)

    status, out, _ = cost(capsys, "--month", MONTH, "--table", table, "--department", "physics")

    assert status == 0
    assert f"Nothing spent or held in {MONTH}" in out and "$0.00" in out


@pytest.mark.usefixtures("orca_env")
def test_a_table_that_does_not_exist_names_the_flag_and_the_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = cost(capsys, "--table", "no-such-ledger", "--department", "physics")

    assert (status, out) == (1, "")
    assert "the ledger table 'no-such-ledger' (physics, us-east-1) does not exist" in err
    assert "--table or set ORCA_LEDGER_TABLE" in err and "ResourceNotFound" not in err[:60]
