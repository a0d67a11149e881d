"""The department's monthly AWS Budget, on the cost tag every ORCA resource carries.

The filter is the cost-allocation tag ``department`` (AWS spells a tag filter
``user:<key>$<value>``); the tag must be activated as a cost-allocation tag in the billing
console once per account before Budgets sees it. Notifications go out at 80 % and 100 % of
actual spend and when the forecast passes the limit. The runtime enforces the limit itself
from its ledger; the Budget is the independent alarm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from orca import tags

# (notification type, threshold in percent of the limit)
NOTIFICATIONS = (("ACTUAL", 80), ("ACTUAL", 100), ("FORECASTED", 100))


@dataclass(frozen=True)
class BudgetArgs:
    cluster: str
    department: str
    limit_usd: int
    alert_emails: Sequence[str]
    tags: dict[str, str]


class Budget(pulumi.ComponentResource):
    """A monthly COST budget filtered on ``department=<department>``."""

    def __init__(
        self, name: str, args: BudgetArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("orca:budget:Budget", name, None, opts)

        self.budget = aws.budgets.Budget(
            f"{name}-monthly",
            name=f"orca-{args.cluster}-{args.department}",
            budget_type="COST",
            limit_amount=str(args.limit_usd),
            limit_unit="USD",
            time_unit="MONTHLY",
            cost_filters=[
                {
                    "name": "TagKeyValue",
                    "values": [f"user:{tags.COST_DEPARTMENT}${args.department}"],
                }
            ],
            notifications=[
                {
                    "comparison_operator": "GREATER_THAN",
                    "notification_type": kind,
                    "threshold": threshold,
                    "threshold_type": "PERCENTAGE",
                    "subscriber_email_addresses": list(args.alert_emails),
                }
                for kind, threshold in NOTIFICATIONS
            ],
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"name": self.budget.name})
