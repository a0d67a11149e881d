"""A retrying loop's outage in the log: one traceback, then one line a failure, then the end."""

from __future__ import annotations

import logging

import pytest

from orca.logging_setup import FailingLoop


def test_an_outage_logs_one_traceback_then_short_lines_then_the_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = FailingLoop(logging.getLogger("orca.test"), "reading agent reports")
    caplog.set_level(logging.INFO, logger="orca.test")

    for _ in range(3):
        outage.failed(ConnectionError("Connection refused"), 5)
    outage.succeeded()
    outage.succeeded()  # nothing more to say while it keeps working

    records = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert records == [
        ("ERROR", "reading agent reports failed; trying again in 5 s", True),
        (
            "WARNING",
            "reading agent reports failed again (2 in a row): ConnectionError: Connection "
            "refused; trying again in 5 s",
            False,
        ),
        (
            "WARNING",
            "reading agent reports failed again (3 in a row): ConnectionError: Connection "
            "refused; trying again in 5 s",
            False,
        ),
        ("INFO", "reading agent reports works again after 3 failures", False),
    ]
