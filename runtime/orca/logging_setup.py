"""Log output for people (text) and for log pipelines (one JSON object per line)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # boto and urllib3 speak at INFO about every connection; keep them to warnings.
    for noisy in ("botocore", "boto3", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class FailingLoop:
    """How a retrying loop tells a person about an outage without flooding the log.

    The first failure is logged with its traceback; the ones after it, while the outage
    lasts, as one line each with the count; the first success after them says the loop
    works again. One instance per loop thread.
    """

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger = logger
        self.what = what
        self.failures = 0

    def failed(self, error: BaseException, retry_in: float) -> None:
        self.failures += 1
        if self.failures == 1:
            self.logger.error(
                "%s failed; trying again in %.0f s", self.what, retry_in, exc_info=error
            )
        else:
            self.logger.warning(
                "%s failed again (%d in a row): %s: %s; trying again in %.0f s",
                self.what,
                self.failures,
                type(error).__name__,
                error,
                retry_in,
            )

    def succeeded(self) -> None:
        if self.failures:
            failures = "1 failure" if self.failures == 1 else f"{self.failures} failures"
            self.logger.info("%s works again after %s", self.what, failures)
            self.failures = 0
