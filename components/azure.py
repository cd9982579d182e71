"""An Azure site: `HybridVnet` (the blog's Azure VNet), its `AzureVmBridge`, and `azure_site`,
which wires them (the UDR's next hop is the bridge's fixed address, known from the topology)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from ipaddress import IPv4Network

import pulumi
import pulumi_azure_native.compute as compute
import pulumi_azure_native.network as network
import pulumi_azure_native.resources as resources

from softether.dynamic import SoftEtherNode
from topology import CloudSite, RouteTable
from topology.clouds import AZURE

from .bridge import BridgeArgs, converge, user_data
from .firewall import Firewall, Rule, cidr_slug

# Regional VNet Integration of an App Service needs its subnet delegated to this service.
APP_SERVICE_DELEGATION = "Microsoft.Web/serverFarms"
AZURE_ADMIN = "hybrid"
STORAGE_SERVICE = "Microsoft.Storage"


@dataclass(frozen=True)
class HybridVnetArgs:
    site: CloudSite
    routes: RouteTable  # this site's table from the routing plan
    firewall: Firewall  # the site's NSG (components/firewall.py `site_nsg`)
    app_subnet: str | None = None  # delegated to Microsoft.Web/serverFarms
    endpoint_subnet: str | None = None  # holds the App Service private endpoint


class HybridVnet(pulumi.ComponentResource):
    """Resource group, VNet with every prefix of the site, its subnets, one route table (UDR)
    and one NSG on every subnet. No Bastion, DDoS plan or firewall (cost).

    The UDR's next hop is the bridge's fixed private address (VirtualAppliance), known from
    the topology, so the routes are complete before the bridge exists.
    """

    resource_group: resources.ResourceGroup
    vnet: network.VirtualNetwork
    subnets: dict[str, network.Subnet]
    route_table: network.RouteTable
    security_group: network.NetworkSecurityGroup

    def __init__(self, name: str, args: HybridVnetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hybrid:azure:HybridVnet", name, None, opts)
        site, table = args.site, args.routes
        child = pulumi.ResourceOptions(parent=self)
        self.resource_group = resources.ResourceGroup(f"{name}-rg", location=site.region, opts=child)
        rg = self.resource_group.name
        self.vnet = network.VirtualNetwork(
            f"{name}-vnet",
            resource_group_name=rg,
            location=site.region,
            address_space={"address_prefixes": [str(c) for c in site.cidrs]},
            # The subnets are separate resources; without this every VNet update would
            # try to delete them.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["subnets"]),
        )
        self.route_table = network.RouteTable(
            f"{name}-rt",
            resource_group_name=rg,
            location=site.region,
            disable_bgp_route_propagation=True,
            routes=[
                {
                    "name": f"to-{cidr_slug(dest)}",
                    "address_prefix": str(dest),
                    "next_hop_type": "VirtualAppliance",
                    "next_hop_ip_address": str(table.bridge_address),
                }
                for dest in table.destinations
            ],
            opts=child,
        )
        self.security_group = network.NetworkSecurityGroup(
            f"{name}-nsg",
            resource_group_name=rg,
            location=site.region,
            security_rules=nsg_rules(args.firewall.ingress),
            opts=child,
        )
        self.subnets = {}
        previous: list[pulumi.Resource] = []
        for s in site.subnets:
            delegated = s.name == args.app_subnet
            subnet = network.Subnet(
                f"{name}-{s.name}",
                subnet_name=s.name,
                resource_group_name=rg,
                virtual_network_name=self.vnet.name,
                address_prefix=str(s.cidr),
                route_table={"id": self.route_table.id},
                network_security_group={"id": self.security_group.id},
                delegations=(
                    [{"name": "app-service", "service_name": APP_SERVICE_DELEGATION}] if delegated else None
                ),
                # The wp-content storage account admits this subnet only (components/app.py):
                # App Service mounts a firewalled account through a service endpoint of its
                # integration subnet ("Mount Azure Storage as a local share", limitations).
                service_endpoints=[{"service": STORAGE_SERVICE}] if delegated else None,
                # With network policies on, the NSG and the route table also apply to the
                # private endpoint: its replies to the other sites go back through the bridge
                # (the UDRs), and only the paths' ports reach it (the NSG).
                private_endpoint_network_policies="Enabled" if s.name == args.endpoint_subnet else None,
                # Azure rejects concurrent changes to subnets of one VNet
                # (AnotherOperationInProgress): create them one after the other.
                opts=pulumi.ResourceOptions(parent=self, depends_on=previous),
            )
            self.subnets[s.name] = subnet
            previous = [subnet]
        self.register_outputs({"vnetId": self.vnet.id, "routeTableId": self.route_table.id})


def nsg_rules(rules: tuple[Rule, ...]) -> list[network.SecurityRuleArgsDict]:
    """Inbound rules in priority order; after them Azure's defaults admit the VirtualNetwork
    tag and deny the rest of the internet."""
    out: list[network.SecurityRuleArgsDict] = []
    for i, r in enumerate(rules):
        rule: network.SecurityRuleArgsDict = {
            "name": r.name,
            "priority": 100 + i,
            "direction": "Inbound",
            "access": "Allow" if r.allow else "Deny",
            "protocol": "Tcp" if r.ports is not None else "*",
            "source_port_range": "*",
            "description": r.description,
        }
        # One range (or any) goes in `..._prefix`, several in `..._prefixes`.
        sources, destinations = _prefixes(r.sources), _prefixes(r.destinations)
        if isinstance(sources, list):
            rule["source_address_prefixes"] = sources
        else:
            rule["source_address_prefix"] = sources
        if isinstance(destinations, list):
            rule["destination_address_prefixes"] = destinations
        else:
            rule["destination_address_prefix"] = destinations
        ports = [str(p) for p in r.ports or ()]
        if len(ports) > 1:
            rule["destination_port_ranges"] = ports
        else:
            rule["destination_port_range"] = ports[0] if ports else "*"
        out.append(rule)
    return out


def _prefixes(cidrs: tuple[IPv4Network, ...] | None) -> str | list[str]:
    """One range, `*` for any (None), or the list of several."""
    if cidrs is None:
        return "*"
    return str(cidrs[0]) if len(cidrs) == 1 else [str(c) for c in cidrs]


def azure_image_sku(vm_size: str) -> str:
    """Debian 12's marketplace SKU for `vm_size` (its architecture's)."""
    return "12-arm64" if AZURE.architecture(vm_size) == "arm64" else "12-gen2"


@dataclass(frozen=True)
class AzureVmBridgeArgs:
    common: BridgeArgs  # what every bridge needs
    vnet: HybridVnet  # the site's network: the bridge's resource group and subnet


class AzureVmBridge(pulumi.ComponentResource):
    """The Azure bridge: static public IP, NIC at the fixed address with IP forwarding on
    (behind the subnet's NSG), Debian 12 VM from the marketplace image."""

    nic: network.NetworkInterface
    public_ip: pulumi.Output[str]
    vm: compute.VirtualMachine
    softether: SoftEtherNode

    def __init__(
        self, name: str, args: AzureVmBridgeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("hybrid:azure:AzureVmBridge", name, None, opts)
        vnet, common = args.vnet, args.common
        site, bridge = common.site, common.site.bridge
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
        custom_data = user_data(common).apply(lambda text: base64.b64encode(text.encode()).decode())
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
                                "key_data": common.operator_public_key,
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
        self.softether = converge(name, common, self, self.public_ip, self.vm, self.vm.vm_id)
        self.register_outputs({"publicIp": self.public_ip})


def azure_site(
    args: BridgeArgs, routes: RouteTable, app_subnet: str | None, endpoint_subnet: str | None = None
) -> tuple[HybridVnet, AzureVmBridge]:
    """The site's VNet (`app_subnet` delegated to App Service, `endpoint_subnet` holding its
    private endpoint) and its bridge."""
    name = args.site.name
    vnet = HybridVnet(name, HybridVnetArgs(args.site, routes, args.firewall, app_subnet, endpoint_subnet))
    return vnet, AzureVmBridge(f"{name}-bridge", AzureVmBridgeArgs(args, vnet))
