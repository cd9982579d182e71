"""The SoftEther bridge VMs: `Ec2Bridge` (AWS) and `AzureVmBridge` (Azure).

Each is a Debian 12 VM with one network interface at the site's fixed bridge address, a
public address (for its outbound cascade and the operator's SSH), forwarding enabled
(src/dst check off / IP forwarding on), SSH only from the operator's range, and cloud-init
that pins the program's host key and installs SoftEther. The SoftEther configuration is
converged afterwards by the bridge's `softether.dynamic.SoftEtherNode`, once sshd opens
(cloud-init opens it only after SoftEther is installed).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws.ec2 as ec2
import pulumi_azure_native.compute as compute
import pulumi_azure_native.network as network

from softether.dynamic import SoftEtherNode
from topology import CloudSite, Topology

from .aws_network import HybridVpc
from .azure_network import HybridVnet
from .cloudinit import HostKey, bridge_cloud_config
from .firewall import BRIDGE_EGRESS, bridge_ingress
from .node import BRIDGE_CONNECT_DEADLINE_S, ssh_target

DEBIAN_AMI_OWNER = "136693071363"  # the Debian cloud team's AWS account
AZURE_ADMIN = "hybrid"
# Debian's cloud images enable no root login by key unless cloud-init is told so; the
# SoftEther converge logs in as root (it writes units and routes).
SSH_USER = "root"


def aws_architecture(instance_type: str) -> str:
    """`arm64` for Graviton families (t4g, m7gd, c6gn, a1), else `x86_64`."""
    family = instance_type.split(".")[0]
    return "arm64" if family == "a1" or re.fullmatch(r"[a-z]+\d+[a-z]*g[a-z]*", family) else "x86_64"


def azure_image_sku(vm_size: str) -> str:
    """Debian 12's marketplace SKU for `vm_size`: Ampere sizes carry a `p` feature letter."""
    return "12-arm64" if re.fullmatch(r"Standard_[A-Z]+\d+[a-z]*p[a-z]*(_v\d+)?", vm_size) else "12-gen2"


@dataclass(frozen=True)
class BridgeArgs:
    """What both bridges need. Keys are pulumi-tls outputs; `spec` is the node's SoftEther
    spec from `softether.derive` (secret); `after`: what the converge waits for (the home
    server, which the cascade dials)."""

    network: Topology
    site: CloudSite
    host_key_private: pulumi.Input[str]
    host_key_public: pulumi.Input[str]
    operator_public_key: pulumi.Input[str]
    operator_private_key: pulumi.Input[str]
    spec: pulumi.Input[dict[str, Any]]
    after: tuple[pulumi.Resource, ...] = ()


def converge(
    name: str,
    args: BridgeArgs,
    parent: pulumi.Resource,
    public_ip: pulumi.Output[str],
    vm: pulumi.Resource,
    machine: pulumi.Output[str],
) -> SoftEtherNode:
    """The bridge's SoftEther node, over SSH to its public address with the pinned host key;
    `machine` (the VM's identity) tells a rebuilt VM at the same address from the old one."""
    target = ssh_target(
        public_ip, args.host_key_public, args.operator_private_key, user=SSH_USER, deadline_s=BRIDGE_CONNECT_DEADLINE_S
    )
    return SoftEtherNode(
        f"{name}-softether",
        args.spec,
        target,
        machine,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[vm, *args.after]),
    )


def user_data(args: BridgeArgs) -> pulumi.Output[str]:
    """The bridge's cloud-config; secret, because it carries the host's private key."""
    doc = pulumi.Output.all(
        args.host_key_private, args.host_key_public, args.operator_public_key
    ).apply(
        lambda v: bridge_cloud_config(args.network.softether, HostKey(v[0], v[1]), [v[2]])
    )
    return pulumi.Output.secret(doc)


class Ec2Bridge(pulumi.ComponentResource):
    """The AWS bridge: security group, ENI at the fixed address (src/dst check off), Elastic
    IP, Debian 12 instance. `eni` is the target of the VPC's routes."""

    security_group: ec2.SecurityGroup
    eni: ec2.NetworkInterface
    public_ip: pulumi.Output[str]
    instance: ec2.Instance
    softether: SoftEtherNode

    def __init__(
        self, name: str, args: BridgeArgs, vpc: HybridVpc, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybrid:aws:Ec2Bridge", name, None, opts)
        site, bridge = args.site, args.site.bridge
        region = site.region
        child = pulumi.ResourceOptions(parent=self)
        size = site.bridge_size
        arch = aws_architecture(size)
        self.security_group = ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=vpc.vpc.id,
            description=f"SoftEther bridge of {site.name}: SSH from the operator, all from the hybrid ranges",
            ingress=[
                {
                    "description": r.description,
                    "protocol": r.protocol if r.port is not None else "-1",
                    "from_port": r.port or 0,
                    "to_port": r.port or 0,
                    "cidr_blocks": [str(r.source)],
                }
                for r in bridge_ingress(args.network)
            ],
            egress=[
                {"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": [str(c)]}
                for c in BRIDGE_EGRESS
            ],
            region=region,
            tags={"Name": f"{site.name}-bridge"},
            opts=child,
        )
        self.eni = ec2.NetworkInterface(
            f"{name}-eni",
            subnet_id=vpc.subnets[bridge.subnet].id,
            private_ips=[str(bridge.private_address)],
            security_groups=[self.security_group.id],
            # The bridge forwards packets addressed to other sites.
            source_dest_check=False,
            region=region,
            tags={"Name": f"{site.name}-bridge"},
            opts=child,
        )
        eip = ec2.Eip(
            f"{name}-eip",
            domain="vpc",
            network_interface=self.eni.id,
            region=region,
            tags={"Name": f"{site.name}-bridge"},
            # An Elastic IP can only be associated once the VPC has its internet gateway.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[vpc.internet_gateway]),
        )
        self.public_ip = eip.public_ip
        ami = ec2.get_ami_output(
            owners=[DEBIAN_AMI_OWNER],
            most_recent=True,
            filters=[
                {"name": "name", "values": [f"debian-12-{'arm64' if arch == 'arm64' else 'amd64'}-*"]},
                {"name": "architecture", "values": [arch]},
            ],
            region=region,
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        self.instance = ec2.Instance(
            f"{name}-vm",
            ami=ami.id,
            instance_type=size,
            primary_network_interface={"network_interface_id": self.eni.id},
            user_data=user_data(args),
            user_data_replace_on_change=True,
            metadata_options={"http_tokens": "required", "http_endpoint": "enabled"},
            # topology.model.AWS_CPU_CREDITS: why unlimited; `hybrid cost` prices the surplus.
            credit_specification={"cpu_credits": site.cpu_credits} if site.cpu_credits else None,
            region=region,
            tags={"Name": f"{site.name}-bridge"},
            # The lookup finds the newest Debian image; a newer one must not replace a running
            # bridge on the next `pulumi up` (`pulumi up --replace` takes it on purpose).
            # The primary ENI is a separate resource that outlives the instance: a replacement
            # can attach it only once the old instance is gone (InvalidNetworkInterface.InUse
            # with Pulumi's default create-before-delete).
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[eip], ignore_changes=["ami"], delete_before_replace=True
            ),
        )
        self.softether = converge(name, args, self, self.public_ip, self.instance, self.instance.id)
        self.register_outputs({"publicIp": self.public_ip, "eniId": self.eni.id})


class AzureVmBridge(pulumi.ComponentResource):
    """The Azure bridge: static public IP, NIC at the fixed address with IP forwarding on
    (behind the subnet's NSG), Debian 12 VM from the marketplace image."""

    nic: network.NetworkInterface
    public_ip: pulumi.Output[str]
    vm: compute.VirtualMachine
    softether: SoftEtherNode

    def __init__(
        self, name: str, args: BridgeArgs, vnet: HybridVnet, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybrid:azure:AzureVmBridge", name, None, opts)
        site, bridge = args.site, args.site.bridge
        rg = vnet.resource_group.name
        child = pulumi.ResourceOptions(parent=self)
        size = site.bridge_size
        pip = network.PublicIPAddress(
            f"{name}-pip",
            resource_group_name=rg,
            location=site.region,
            # Standard SKU: static, and closed to inbound traffic unless an NSG allows it.
            sku={"name": "Standard"},
            public_ip_allocation_method="Static",
            opts=child,
        )
        self.public_ip = pip.ip_address.apply(lambda a: a or "")
        self.nic = network.NetworkInterface(
            f"{name}-nic",
            resource_group_name=rg,
            location=site.region,
            # The bridge forwards packets addressed to other sites.
            enable_ip_forwarding=True,
            ip_configurations=[
                {
                    "name": "primary",
                    "primary": True,
                    "subnet": {"id": vnet.subnets[bridge.subnet].id},
                    "private_ip_allocation_method": "Static",
                    "private_ip_address": str(bridge.private_address),
                    "public_ip_address": {"id": pip.id},
                }
            ],
            opts=child,
        )
        custom_data = user_data(args).apply(lambda text: base64.b64encode(text.encode()).decode())
        self.vm = compute.VirtualMachine(
            f"{name}-vm",
            resource_group_name=rg,
            location=site.region,
            hardware_profile={"vm_size": size},
            storage_profile={
                "image_reference": {
                    "publisher": "Debian",
                    "offer": "debian-12",
                    "sku": azure_image_sku(size),
                    "version": "latest",
                },
                "os_disk": {
                    "create_option": "FromImage",
                    "delete_option": "Delete",
                    "managed_disk": {"storage_account_type": "Standard_LRS"},
                },
            },
            os_profile={
                "computer_name": f"{site.name.lower().replace('_', '-')}-bridge",
                "admin_username": AZURE_ADMIN,
                "custom_data": custom_data,
                "linux_configuration": {
                    "disable_password_authentication": True,
                    "ssh": {
                        "public_keys": [
                            {
                                "path": f"/home/{AZURE_ADMIN}/.ssh/authorized_keys",
                                "key_data": args.operator_public_key,
                            }
                        ]
                    },
                },
            },
            # The NIC is a Pulumi resource that outlives the VM: `Detach`, or Azure deletes it
            # together with the replaced VM.
            network_profile={
                "network_interfaces": [{"id": self.nic.id, "primary": True, "delete_option": "Detach"}]
            },
            # Azure refuses to change customData or the image of an existing VM
            # (PropertyChangeNotAllowed) while azure-native plans both as updates; the new VM
            # needs the NIC and the computer name of the old one, so it goes first.
            opts=pulumi.ResourceOptions(
                parent=self,
                replace_on_changes=["osProfile.customData", "storageProfile.imageReference"],
                delete_before_replace=True,
            ),
        )
        self.softether = converge(name, args, self, self.public_ip, self.vm, self.vm.vm_id)
        self.register_outputs({"publicIp": self.public_ip})
