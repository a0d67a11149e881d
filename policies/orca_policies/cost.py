"""The cost pack's policies: what a department's envelope may commit the institution to pay.

Prices come from the runtime's own instance catalog (:meth:`orca.catalog.Catalog.shipped`,
us-east-1 Linux on-demand list prices), so the packs and the runtime agree on what an hour
of an instance type costs. Every threshold is in the policy's config schema, so an
institution sets it per policy group; the defaults suit a department of the example stacks.
"""

from __future__ import annotations

from orca_policies import cost_checks as checks
from orca_policies import types
from orca_policies.values import resource_policy, schema, stack_policy

_ALLOWED_TYPES = checks.ALLOWED_TYPES_SCHEMA

POLICIES = [
    resource_policy(
        name="ec2-launch-template-instance-type-allowed",
        description="Checks that launch templates name only instance types the department may "
        "use, and that attribute-based selection (instance requirements) is limited to them.",
        remediation="Name an allowed type in the launch template, or leave the type to the "
        "runtime (which checks it per pod); with instance_requirements, list allowed types "
        "in its allowed_instance_types. The institution sets allowedInstanceTypes.",
        types=[types.LAUNCH_TEMPLATE],
        check=checks.template_type_allowed,
        config=schema(allowedInstanceTypes=_ALLOWED_TYPES),
    ),
    resource_policy(
        name="ec2-capacity-reservation-instance-type-allowed",
        description="Checks that capacity reservations reserve only instance types the "
        "department may use.",
        remediation="Reserve an allowed type; the institution sets allowedInstanceTypes.",
        # A capacity block's type comes from its offering and is not an input; buying one at
        # all needs the opt-in of ec2-capacity-block-opt-in.
        types=[types.RESERVATION],
        check=checks.reserved_type_allowed,
        config=schema(allowedInstanceTypes=_ALLOWED_TYPES),
    ),
    resource_policy(
        name="ec2-capacity-reservation-targeted",
        description="Checks that every capacity reservation is targeted, used only by launches "
        "that name it or its group.",
        remediation="Set instance_match_criteria='targeted' on the reservation.",
        types=[types.RESERVATION],
        check=checks.reservation_targeted,
    ),
    resource_policy(
        name="ec2-capacity-reservation-end-date",
        description="Checks that every capacity reservation ends on a date, no further ahead "
        "than the institution allows.",
        remediation="Set end_date_type='limited' and an end_date within maxDaysAhead days.",
        types=[types.RESERVATION],
        check=checks.reservation_end_date,
        config=schema(
            maxDaysAhead={
                "type": "integer",
                "minimum": 1,
                "default": 366,
                "description": "How many days ahead a reservation may end at the latest.",
            }
        ),
    ),
    resource_policy(
        name="ec2-capacity-reservation-count",
        description="Checks that each capacity reservation reserves a bounded number of instances.",
        remediation="Lower instance_count to at most maxInstanceCount.",
        types=[types.RESERVATION],
        check=checks.reservation_count,
        config=schema(
            maxInstanceCount={
                "type": "integer",
                "minimum": 1,
                "default": 4,
                "description": "The most instances one reservation may hold.",
            }
        ),
    ),
    resource_policy(
        name="ec2-capacity-block-opt-in",
        description="Checks that capacity blocks, paid up front and not cancellable, are bought "
        "or launched into only with the institution's explicit opt-in.",
        remediation="Remove the capacity block, or have the institution set "
        "allowCapacityBlocks to true for the department's policy group.",
        types=[types.CAPACITY_BLOCK, types.LAUNCH_TEMPLATE],
        check=checks.capacity_block_opt_in,
        config=schema(
            allowCapacityBlocks={
                "type": "boolean",
                "default": False,
                "description": "Whether the department may buy and use capacity blocks.",
            }
        ),
    ),
    stack_policy(
        name="ec2-capacity-reservation-committed-spend",
        description="Checks that the committed spend of capacity reservations and capacity "
        "blocks (instances x on-demand price x hours until they end; a block's whole length) "
        "fits in the stack's budget over the same months.",
        remediation="Reserve fewer or cheaper instances, end reservations sooner, or raise the "
        "department's budget (orca:budget).",
        check=checks.committed_spend,
        config=schema(
            monthlyBudgetUsd={
                "type": "number",
                "minimum": 0,
                "default": 0,
                "description": "The monthly budget when the stack declares no AWS Budget "
                "(0: none).",
            },
            maxBudgetShare={
                "type": "number",
                "exclusiveMinimum": 0,
                "default": 1.0,
                "description": "The share of the budget reservations may commit (1.0: all).",
            },
        ),
    ),
    stack_policy(
        name="budgets-budget-monthly-department",
        description="Checks that the stack declares exactly one monthly AWS cost budget, "
        "filtered on the department tag, with actual and forecasted notifications.",
        remediation="Declare one aws.budgets.Budget with time_unit='MONTHLY', "
        "budget_type='COST', a TagKeyValue filter user:department$<department> and ACTUAL "
        "and FORECASTED notifications with subscribers.",
        check=checks.department_budget,
    ),
    resource_policy(
        name="ec2-launch-template-spot-max-price",
        description="Checks that a launch template's spot max price is never above the "
        "instance type's on-demand price.",
        remediation="Lower spot_options.max_price to the on-demand price or leave it out.",
        types=[types.LAUNCH_TEMPLATE],
        check=checks.spot_max_price,
    ),
    resource_policy(
        name="ec2-launch-template-root-volume-size",
        description="Checks that launch templates give the root volume no more than the "
        "allowed size.",
        remediation="Lower the root mapping's ebs.volume_size; pods that need more ask for it "
        "with orca.research/root-volume-gib.",
        types=[types.LAUNCH_TEMPLATE],
        check=checks.root_volume_size,
        config=schema(
            maxRootVolumeGib={
                "type": "integer",
                "minimum": 8,
                "default": 500,
                "description": "The largest root volume a launch template may give, in GiB.",
            },
            rootDeviceNames={
                "type": "array",
                "items": {"type": "string"},
                "default": ["/dev/xvda", "/dev/sda1"],
                "description": "The device names of root volumes.",
            },
        ),
    ),
    stack_policy(
        name="ec2-nat-gateway-count",
        description="Checks that the stack runs at most the allowed number of NAT gateways.",
        remediation="Route every private subnet through one NAT gateway.",
        check=checks.nat_gateways,
        config=schema(
            maxNatGateways={
                "type": "integer",
                "minimum": 0,
                "default": 1,
                "description": "The most NAT gateways a department stack may run.",
            }
        ),
    ),
    stack_policy(
        name="ec2-vpc-endpoint-s3-gateway",
        description="Checks that a stack that creates a VPC gives it an S3 gateway endpoint.",
        remediation="Add a Gateway VPC endpoint for com.amazonaws.<region>.s3 on the private "
        "route tables.",
        check=checks.s3_gateway_endpoint,
    ),
    resource_policy(
        name="cloudwatch-log-group-retention",
        description="Checks that every log group has a retention period within the allowed "
        "maximum.",
        remediation="Set retention_in_days (the stack's orca:logRetentionDays) to at most "
        "maxRetentionDays.",
        types=[types.LOG_GROUP],
        check=checks.log_retention,
        config=schema(
            maxRetentionDays={
                "type": "integer",
                "minimum": 1,
                "default": 365,
                "description": "The longest retention a log group may have, in days.",
            }
        ),
    ),
]
