"""One launch template per kind of burst instance: x86 with GPUs, x86, and arm64.

The kinds are the keys of the runtime's ``ORCA_LAUNCH_TEMPLATES``. Each template pins an
ECS-optimized Amazon Linux 2023 image, read from AWS's public SSM parameters when the stack
is deployed (the GPU image ships the NVIDIA driver and container toolkit). The runtime
chooses the instance type, subnet and user data at launch; everything that must hold for
every burst instance is fixed here:

- IMDSv2 only, hop limit 1, and IMDS over IPv6 off: a container with a network namespace
  of its own sits one hop further than the host and gets no token. The pod's containers
  share the host's network, so the bootstrap's metadata guard keeps them from IMDS with a
  firewall rule on their cgroup (see ``orca.bootstrap``);
- an encrypted gp3 root volume that goes with the instance;
- shutdown from inside terminates, so a powered-off instance costs nothing;
- tag specifications for the instance, its volumes and its network interfaces with the
  department's cost tags: provider default tags do not reach what the runtime launches.

No network interface and no security group are declared. The runtime launches with an
explicit network interface (``AssociatePublicIpAddress`` false, the subnet, and the security
group from ``ORCA_SECURITY_GROUP_IDS``), and EC2 refuses a request whose network interface
names groups when its launch template names groups at the top level, so the group travels
in the request. Nothing here can ask for a public address, and the subnets never map one.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

# The public SSM parameters of the ECS-optimized Amazon Linux 2023 AMIs.
AMI_PARAMETERS = {
    "x86_64-gpu": "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id",
    "x86_64": "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id",
    "arm64": "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id",
}
# Default root sizes; a pod may ask for another with orca.research/root-volume-gib.
ROOT_VOLUME_GIB = {"x86_64-gpu": 200, "x86_64": 50, "arm64": 50}
ROOT_DEVICE = "/dev/xvda"
TAGGED_RESOURCE_TYPES = ("instance", "volume", "network-interface")


@dataclass(frozen=True)
class LaunchTemplatesArgs:
    instance_profile_arn: pulumi.Input[str]
    tags: dict[str, str]


class LaunchTemplates(pulumi.ComponentResource):
    """The launch templates by kind; ``templates`` maps kind -> LaunchTemplate."""

    templates: dict[str, aws.ec2.LaunchTemplate]

    def __init__(
        self, name: str, args: LaunchTemplatesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("orca:launch_templates:LaunchTemplates", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.templates = {}

        for kind, parameter in AMI_PARAMETERS.items():
            image = aws.ssm.get_parameter_output(
                name=parameter, opts=pulumi.InvokeOutputOptions(parent=self)
            )
            self.templates[kind] = aws.ec2.LaunchTemplate(
                f"{name}-{kind}",
                description=f"ORCA burst instances, {kind}",
                image_id=image.value,
                iam_instance_profile={"arn": args.instance_profile_arn},
                # No vpc_security_group_ids: the request's network interface carries the
                # group, and EC2 rejects groups named both there and here.
                instance_initiated_shutdown_behavior="terminate",
                metadata_options={
                    "http_endpoint": "enabled",
                    "http_tokens": "required",
                    "http_put_response_hop_limit": 1,
                    # The metadata guard's rule covers IMDS's IPv4 address only.
                    "http_protocol_ipv6": "disabled",
                    "instance_metadata_tags": "disabled",
                },
                block_device_mappings=[
                    {
                        "device_name": ROOT_DEVICE,
                        "ebs": {
                            "volume_size": ROOT_VOLUME_GIB[kind],
                            "volume_type": "gp3",
                            "encrypted": "true",
                            "delete_on_termination": "true",
                        },
                    }
                ],
                tag_specifications=[
                    {"resource_type": resource_type, "tags": args.tags}
                    for resource_type in TAGGED_RESOURCE_TYPES
                ],
                update_default_version=True,
                tags=args.tags,
                opts=child,
            )

        self.register_outputs({"ids": {k: t.id for k, t in self.templates.items()}})

    @property
    def ids(self) -> dict[str, pulumi.Output[str]]:
        return {kind: template.id for kind, template in self.templates.items()}

    @property
    def arns(self) -> list[pulumi.Output[str]]:
        return [template.arn for template in self.templates.values()]
