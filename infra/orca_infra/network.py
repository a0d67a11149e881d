"""Where burst instances live: private subnets, one NAT gateway, endpoints, a security group.

A created network is a VPC with one private subnet per configured zone (instances never get
public addresses), a small public subnet that holds only the single NAT gateway through
which images are pulled, a free S3 gateway endpoint (bundles and ECR layers stay off the
NAT), and, behind a flag, interface endpoints so AWS API, image and log traffic need not
cross the NAT either (each costs about 7 USD a month per zone).

An adopted network (``vpcId`` and ``subnetIds``, e.g. one shared by several departments)
is used as it is: only the burst instances' security group is created in it. Its subnets are
looked up first (:func:`check_adopted_subnets`) and the stack is refused, before anything is
created, if one maps public IPs on launch, lies outside the VPC, or leaves a reservation's
zone without a subnet. The runtime asks for no public address at launch either; the subnet
check keeps the envelope sound whatever launches into it.

A shared network (``stack``) is another department's ORCA stack, read through a
StackReference to its ``vpcId`` and ``subnetIds`` outputs: departments then share one VPC
and one NAT gateway. Its subnets get the same check, during the preview.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from orca_infra.config import (
    PROJECT,
    AdoptedNetwork,
    ConfigError,
    CreatedNetwork,
    Reservation,
    SharedNetwork,
)

# Services the runtime and the agent call; with endpoints they resolve to private addresses.
INTERFACE_ENDPOINT_SERVICES = ("ec2", "sqs", "logs", "ecr.api", "ecr.dkr", "sts")


def check_adopted_subnets(
    network: AdoptedNetwork,
    reservations: Sequence[Reservation],
    opts: pulumi.InvokeOptions,
) -> None:
    """Refuse adopted subnets that would give burst instances public IPs or miss a zone.

    The lookups are synchronous invokes, so a refusal stops ``pulumi preview`` and
    ``pulumi up`` before any resource is declared.
    """
    subnets = [aws.ec2.get_subnet(id=subnet_id, opts=opts) for subnet_id in network.subnet_ids]
    problems = subnet_problems(
        network.vpc_id,
        subnets,
        reservations,
        subnets_key=f"{PROJECT}:network.subnetIds",
        vpc_key=f"{PROJECT}:network.vpcId",
    )
    if problems:
        raise ConfigError(
            "the adopted network cannot hold burst instances; fix these keys with "
            "`pulumi config set` (nothing was created):\n" + "\n".join(problems)
        )


def subnet_problems(
    vpc_id: str,
    subnets: Sequence[aws.ec2.GetSubnetResult],
    reservations: Sequence[Reservation],
    *,
    subnets_key: str,
    vpc_key: str,
) -> list[str]:
    """What makes these subnets of ``vpc_id`` unfit for burst instances, one line each."""
    problems = []
    zones = set()
    for subnet in subnets:
        zones.add(subnet.availability_zone)
        if subnet.map_public_ip_on_launch:
            problems.append(
                f"  {subnets_key}: {subnet.id} maps public IPs on launch "
                "(MapPublicIpOnLaunch); burst instances belong in private subnets, so name "
                "private subnets or turn the attribute off"
            )
        if subnet.vpc_id != vpc_id:
            problems.append(
                f"  {subnets_key}: {subnet.id} is in {subnet.vpc_id}, not in {vpc_key} {vpc_id}"
            )
    for i, reservation in enumerate(reservations):
        if reservation.availability_zone not in zones:
            problems.append(
                f"  {PROJECT}:capacityReservations[{i}].availabilityZone: "
                f"{reservation.availability_zone} has no subnet of this stack "
                f"({subnets_key} are in {', '.join(sorted(zones))})"
            )
    return problems


@dataclass(frozen=True)
class NetworkArgs:
    network: CreatedNetwork | AdoptedNetwork | SharedNetwork
    region: str
    tags: dict[str, str]
    # Each reservation's zone needs a subnet; checked here for a shared network.
    reservations: Sequence[Reservation] = ()


class Network(pulumi.ComponentResource):
    """The VPC, the private burst subnets and the burst instances' security group."""

    vpc_id: pulumi.Output[str]
    subnet_ids: pulumi.Output[list[str]]
    security_group_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("orca:network:Network", name, None, opts)
        self._name = name
        self._args = args
        child = pulumi.ResourceOptions(parent=self)

        if isinstance(args.network, CreatedNetwork):
            vpc = aws.ec2.Vpc(
                f"{name}-vpc",
                cidr_block=args.network.cidr,
                # Instances resolve AWS endpoints (and private endpoint names) by DNS.
                enable_dns_support=True,
                enable_dns_hostnames=True,
                tags=self._tags(f"{name}-vpc"),
                opts=child,
            )
            self.vpc_id = vpc.id
            self.subnet_ids = self._create_subnets(vpc, args.network, child)
        elif isinstance(args.network, SharedNetwork):
            self.vpc_id, self.subnet_ids = self._shared(args.network, child)
        else:
            self.vpc_id = pulumi.Output.from_input(args.network.vpc_id)
            self.subnet_ids = pulumi.Output.from_input(list(args.network.subnet_ids))

        self.security_group_id = self._security_group(args.network.on_prem_cidr, child).id
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "subnetIds": self.subnet_ids,
                "securityGroupId": self.security_group_id,
            }
        )

    def _shared(
        self, network: SharedNetwork, child: pulumi.ResourceOptions
    ) -> tuple[pulumi.Output[str], pulumi.Output[list[str]]]:
        """The VPC and subnets another department's stack exports, checked like adopted ones.

        The referenced stack's outputs are known at preview, so the lookups and the check run
        in the preview that ``pulumi up`` starts with. The VPC id and the subnet ids are
        handed on only once the check has passed, so nothing in the shared VPC (this stack's
        security group, the runtime's settings) is declared from subnets that failed it.
        """
        reference = pulumi.StackReference(network.stack, opts=child)
        vpc_id = reference.require_output("vpcId")
        subnet_ids = reference.require_output("subnetIds")
        invoke = pulumi.InvokeOutputOptions(parent=self)
        looked_up = subnet_ids.apply(
            lambda ids: pulumi.Output.all(
                *[aws.ec2.get_subnet_output(id=subnet_id, opts=invoke) for subnet_id in ids]
            )
        )
        subnets_key = f"the subnetIds of {PROJECT}:network.stack {network.stack}"
        vpc_key = f"the vpcId of {PROJECT}:network.stack {network.stack}"

        def checked(resolved: list[Any]) -> tuple[str, list[str]]:
            shared_vpc, subnets = resolved
            problems = subnet_problems(
                shared_vpc,
                subnets,
                self._args.reservations,
                subnets_key=subnets_key,
                vpc_key=vpc_key,
            )
            if problems:
                raise ConfigError(
                    "the shared network cannot hold this department's burst instances; fix "
                    "these keys with `pulumi config set` or fix the network's stack:\n"
                    + "\n".join(problems)
                )
            return shared_vpc, [subnet.id for subnet in subnets]

        both = pulumi.Output.all(vpc_id, looked_up).apply(checked)
        return both.apply(lambda b: b[0]), both.apply(lambda b: b[1])

    def _tags(self, name: str) -> dict[str, str]:
        return {**self._args.tags, "Name": name}

    def _create_subnets(
        self, vpc: aws.ec2.Vpc, network: CreatedNetwork, child: pulumi.ResourceOptions
    ) -> pulumi.Output[list[str]]:
        name = self._name
        cidr = ipaddress.ip_network(network.cidr)
        # Sixteen equal blocks: one per zone (at most six), the last one holds the public /28.
        blocks = list(cidr.subnets(new_prefix=cidr.prefixlen + 4))
        public_cidr = next(blocks[-1].subnets(new_prefix=28))

        private = [
            aws.ec2.Subnet(
                f"{name}-private-{zone}",
                vpc_id=vpc.id,
                cidr_block=str(block),
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags=self._tags(f"{name}-private-{zone}"),
                opts=child,
            )
            for zone, block in zip(network.zones, blocks, strict=False)
        ]

        # The NAT gateway's own subnet; nothing else is placed here, so it maps no public IPs
        # either (the NAT gateway carries an Elastic IP).
        public = aws.ec2.Subnet(
            f"{name}-public",
            vpc_id=vpc.id,
            cidr_block=str(public_cidr),
            availability_zone=network.zones[0],
            map_public_ip_on_launch=False,
            tags=self._tags(f"{name}-public"),
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags=self._tags(f"{name}-igw"), opts=child
        )
        public_routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": gateway.id}],
            tags=self._tags(f"{name}-public"),
            opts=child,
        )
        aws.ec2.RouteTableAssociation(
            f"{name}-public", subnet_id=public.id, route_table_id=public_routes.id, opts=child
        )

        # One NAT gateway for all zones: image pulls are bursty but small next to instance
        # costs, and a NAT per zone would triple the fixed monthly charge.
        address = aws.ec2.Eip(
            f"{name}-nat", domain="vpc", tags=self._tags(f"{name}-nat"), opts=child
        )
        nat = aws.ec2.NatGateway(
            f"{name}-nat",
            allocation_id=address.id,
            subnet_id=public.id,
            connectivity_type="public",
            tags=self._tags(f"{name}-nat"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
        )
        private_routes = aws.ec2.RouteTable(
            f"{name}-private",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
            tags=self._tags(f"{name}-private"),
            opts=child,
        )
        for zone, subnet in zip(network.zones, private, strict=True):
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{zone}",
                subnet_id=subnet.id,
                route_table_id=private_routes.id,
                opts=child,
            )

        # Gateway endpoints are free; bundle reads and ECR layer downloads (S3) skip the NAT.
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{self._args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[private_routes.id],
            tags=self._tags(f"{name}-s3"),
            opts=child,
        )
        if network.interface_endpoints:
            self._interface_endpoints(vpc, network, [s.id for s in private], child)
        return pulumi.Output.all(*[s.id for s in private])

    def _interface_endpoints(
        self,
        vpc: aws.ec2.Vpc,
        network: CreatedNetwork,
        subnet_ids: list[pulumi.Output[str]],
        child: pulumi.ResourceOptions,
    ) -> None:
        name = self._name
        endpoints = aws.ec2.SecurityGroup(
            f"{name}-endpoints",
            vpc_id=vpc.id,
            description="ORCA interface endpoints: HTTPS from the VPC",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": 443,
                    "to_port": 443,
                    "cidr_blocks": [network.cidr],
                    "description": "AWS API calls from the VPC",
                }
            ],
            tags=self._tags(f"{name}-endpoints"),
            opts=child,
        )
        for service in INTERFACE_ENDPOINT_SERVICES:
            aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{self._args.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=subnet_ids,
                security_group_ids=[endpoints.id],
                tags=self._tags(f"{name}-{service}"),
                opts=child,
            )

    def _security_group(
        self, on_prem_cidr: str | None, child: pulumi.ResourceOptions
    ) -> aws.ec2.SecurityGroup:
        name = self._name
        # The agent only calls out (SQS, S3, Logs, registries); nothing calls in, except
        # over a site-to-site link from the institution when one is configured.
        ingress = []
        if on_prem_cidr is not None:
            ingress.append(
                {
                    "protocol": "-1",
                    "from_port": 0,
                    "to_port": 0,
                    "cidr_blocks": [on_prem_cidr],
                    "description": "the institution's network over the site-to-site link",
                }
            )
        return aws.ec2.SecurityGroup(
            f"{name}-instances",
            vpc_id=self.vpc_id,
            description="ORCA burst instances",
            ingress=ingress,
            egress=[
                {
                    "protocol": "-1",
                    "from_port": 0,
                    "to_port": 0,
                    "cidr_blocks": ["0.0.0.0/0"],
                    "description": "image pulls, AWS APIs and whatever the pod downloads",
                }
            ],
            tags=self._tags(f"{name}-instances"),
            opts=child,
        )
