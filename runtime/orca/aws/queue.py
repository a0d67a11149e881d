"""The department's status queue: the agent's reports on its pod, carried by SQS.

The agent sends one :class:`~orca.messages.StatusReport` per change; the runtime
long-polls, applies what it receives and deletes it. The queue is a standard
queue (at-least-once, unordered), which the reports are designed for: each is a
full snapshot with a growing sequence number, so duplicates and reordering are
harmless and no MessageGroupId is needed.

A message that is not a valid report (another schema version, a stray test
message) is logged at WARNING with its id and deleted: left in the queue it
would come back forever and stall nothing but the logs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from orca.aws.errors import aws_call
from orca.messages import StatusReport

log = logging.getLogger(__name__)

# SQS limits: 10 messages per receive and per batch delete, 20 s longest long poll.
BATCH_MAX = 10
LONG_POLL_MAX_SECONDS = 20


@dataclass(frozen=True)
class ReceivedReport:
    report: StatusReport
    receipt_handle: str
    message_id: str


class StatusQueue:
    """Send, receive and delete status reports on one SQS queue."""

    def __init__(self, sqs_client: Any, url: str) -> None:
        self._sqs = sqs_client
        self.url = url

    def send(self, report: StatusReport) -> str:
        """Send one report; returns the SQS message id."""
        context = f"sending status of pod {report.pod_uid} (sequence {report.sequence})"
        with aws_call(context):
            response = self._sqs.send_message(QueueUrl=self.url, MessageBody=report.to_json())
        return str(response["MessageId"])

    def receive(
        self, max_messages: int = BATCH_MAX, wait_seconds: int = LONG_POLL_MAX_SECONDS
    ) -> list[ReceivedReport]:
        """Reports waiting in the queue, after at most ``wait_seconds`` of long polling."""
        with aws_call("receiving status reports"):
            response = self._sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=min(max_messages, BATCH_MAX),
                WaitTimeSeconds=min(wait_seconds, LONG_POLL_MAX_SECONDS),
            )

        received: list[ReceivedReport] = []
        invalid: list[str] = []
        for message in response.get("Messages", []):
            try:
                report = StatusReport.from_json(message["Body"])
            except ValidationError as e:
                log.warning(
                    "deleting message %s from %s: not a status report: %s",
                    message["MessageId"],
                    self.url,
                    _first_error(e),
                )
                invalid.append(message["ReceiptHandle"])
                continue
            received.append(ReceivedReport(report, message["ReceiptHandle"], message["MessageId"]))

        if invalid:
            self.delete(invalid)
        return received

    def delete(self, receipt_handles: Iterable[str]) -> None:
        """Delete received messages, in batches of ten.

        A failed delete is logged and left: the message comes back after its
        visibility timeout and, being an old sequence, is then ignored.
        """
        handles = list(receipt_handles)
        for start in range(0, len(handles), BATCH_MAX):
            batch = handles[start : start + BATCH_MAX]
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(batch)]
            with aws_call(f"deleting {len(batch)} status message(s)"):
                response = self._sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
            for failure in response.get("Failed", []):
                log.warning(
                    "could not delete a status message (%s: %s); it will be delivered again",
                    failure.get("Code"),
                    failure.get("Message"),
                )


def _first_error(e: ValidationError) -> str:
    errors = e.errors()
    if not errors:
        return str(e)
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg')} ({len(errors)} error(s))"
