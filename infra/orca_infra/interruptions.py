"""How the runtime hears of interruptions: EventBridge rules into one encrypted SQS queue.

Spot interruption warnings (two minutes' notice), rebalance recommendations, instance state
changes and AWS Health events for EC2 go to the queue; the runtime reads it and acts on the
pods whose instances they name. Events carry no instance tags, so the rules cannot filter by
department: the runtime drops events for instances that are not its own. The queue policy
lets EventBridge send only on behalf of these rules (``aws:SourceArn``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

# rule suffix -> event pattern (EventBridge's documented sources and detail types).
EVENT_PATTERNS: dict[str, dict[str, Any]] = {
    "spot-interruption": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Spot Instance Interruption Warning"],
    },
    "rebalance": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance Rebalance Recommendation"],
    },
    "state-change": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance State-change Notification"],
    },
    "health": {
        "source": ["aws.health"],
        "detail-type": ["AWS Health Event"],
        "detail": {"service": ["EC2"]},
    },
}


@dataclass(frozen=True)
class InterruptionsArgs:
    tags: dict[str, str]


class Interruptions(pulumi.ComponentResource):
    """The interruption queue, the rules that feed it and the policy that lets them."""

    def __init__(
        self, name: str, args: InterruptionsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("orca:interruptions:Interruptions", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.queue = aws.sqs.Queue(
            f"{name}-queue",
            sqs_managed_sse_enabled=True,
            # Interruption notices are worthless after the instance is gone.
            message_retention_seconds=3600,
            receive_wait_time_seconds=20,
            tags=args.tags,
            opts=child,
        )

        rules = []
        for suffix, pattern in EVENT_PATTERNS.items():
            rule = aws.cloudwatch.EventRule(
                f"{name}-{suffix}",
                description=f"ORCA: {pattern['detail-type'][0]} to the interruption queue",
                event_pattern=json.dumps(pattern),
                tags=args.tags,
                opts=child,
            )
            aws.cloudwatch.EventTarget(
                f"{name}-{suffix}", rule=rule.name, arn=self.queue.arn, opts=child
            )
            rules.append(rule)

        aws.sqs.QueuePolicy(
            f"{name}-queue",
            queue_url=self.queue.url,
            policy=pulumi.Output.all(self.queue.arn, *[r.arn for r in rules]).apply(
                lambda arns: json.dumps(_queue_policy(arns[0], arns[1:]))
            ),
            opts=child,
        )
        self.register_outputs({"queueUrl": self.queue.url, "queueArn": self.queue.arn})


def _queue_policy(queue_arn: str, rule_arns: list[str]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EventBridgeRulesOfThisStack",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}},
            }
        ],
    }
