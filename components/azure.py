"""An Azure site: `HybridVnet` (the blog's Azure VNet), its `AzureVmBridge` (or a pair of
them), and `azure_site`, which wires them (the UDR's next hop is the bridge's fixed address,
known from the topology; a pair's failover controller moves it, with `FailoverAccess`)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any

import pulumi
import pulumi_azure_native.authorization as authorization
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
# The input of a moved route that the failover controller owns once the route exists.
MOVED_TARGET = "nextHopIpAddress"
# What a pair's failover controller may do, on its site's route table only: read the table
# and its routes, write a route (its next hop). Nothing else of the network.
FAILOVER_ACTIONS = (
    "Microsoft.Network/routeTables/read",
    "Microsoft.Network/routeTables/routes/read",
    "Microsoft.Network/routeTables/routes/write",
)


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
    routes: dict[str, network.Route]  # a pair's moved routes, by route name
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
        inline: list[network.RouteArgsDict] = [
            {
                "name": route_name(dest),
                "address_prefix": str(dest),
                "next_hop_type": "VirtualAppliance",
                "next_hop_ip_address": str(table.bridge_address),
            }
            for dest in table.destinations
        ]
        paired = table.standby_address is not None
        # A pair: the routes are resources of their own, the failover controller owns their
        # next hop once they exist (first placed on bridge a), and the table leaves its routes
        # to them (or an update of the table would put the inline next hops back).
        self.route_table = network.RouteTable(
            f"{name}-rt",
            resource_group_name=rg,
            location=site.region,
            disable_bgp_route_propagation=True,
            routes=None if paired else inline,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["routes"] if paired else None),
        )
        self.routes = {
            route_name(dest): network.Route(
                f"{name}-rt-{route_name(dest)}",
                resource_group_name=rg,
                route_table_name=self.route_table.name,
                route_name=route_name(dest),
                address_prefix=str(dest),
                next_hop_type="VirtualAppliance",
                next_hop_ip_address=str(table.bridge_address),
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=[MOVED_TARGET]),
            )
            for dest in (table.destinations if paired else ())
        }
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


def route_name(destination: IPv4Network) -> str:
    return f"to-{cidr_slug(destination)}"


class FailoverAccess(pulumi.ComponentResource):
    """What a pair's failover controllers may do with their VMs' managed identities: a custom
    role of `FAILOVER_ACTIONS` (defined in the site's resource group: a custom role is
    assignable at a group, not at one resource), assigned on the site's route table only."""

    role: authorization.RoleDefinition

    def __init__(self, name: str, vnet: HybridVnet, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hybrid:azure:FailoverAccess", name, None, opts)
        self._table = vnet.route_table.id
        group = vnet.resource_group
        self.role = authorization.RoleDefinition(
            f"{name}-role",
            # Role names are unique in the tenant: the group's (generated) name makes it so.
            role_name=group.name.apply(lambda g: f"hybrid-cloud route failover {g}"),
            description="Move the next hop of the site's routes between its two bridges",
            role_type="CustomRole",
            scope=group.id,
            assignable_scopes=[group.id],
            permissions=[{"actions": list(FAILOVER_ACTIONS), "not_actions": []}],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"roleId": self.role.id})

    def grant(self, name: str, principal_id: pulumi.Input[str], parent: pulumi.Resource) -> None:
        """The role for one VM's system-assigned identity, on the route table."""
        authorization.RoleAssignment(
            f"{name}-failover",
            principal_id=principal_id,
            principal_type="ServicePrincipal",
            role_definition_id=self.role.id,
            scope=self._table,
            opts=pulumi.ResourceOptions(parent=parent),
        )


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
    failover: FailoverAccess | None = None  # a pair's bridge: the role its controller acts with


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
        site, bridge = common.site, common.vm
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
        custom_data = user_data(common, self._driver(args)).apply(
            lambda text: base64.b64encode(text.encode()).decode()
        )
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
                "computer_name": f"{bridge.node.lower().replace('_', '-')}-bridge",
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
            # A pair's bridges in two availability zones, where the stack names them.
            zones=[pair.zones[0 if bridge.role == "a" else 1]] if (pair := site.bridge.pair) and pair.zones else None,
            # A pair's bridge: the identity its failover controller moves the routes with.
            identity=compute.VirtualMachineIdentityArgs(type=compute.ResourceIdentityType.SYSTEM_ASSIGNED)
            if args.failover
            else None,
            # Azure refuses to change customData or the image of an existing VM
            # (PropertyChangeNotAllowed) while azure-native plans both as updates; the new VM
            # needs the NIC and the computer name of the old one, so it goes first.
            opts=pulumi.ResourceOptions(
                parent=self,
                replace_on_changes=["osProfile.customData", "storageProfile.imageReference"],
                delete_before_replace=True,
            ),
        )
        if args.failover is not None:
            identity = self.vm.identity.apply(lambda i: i.principal_id if i else None)
            args.failover.grant(name, identity.apply(lambda p: p or ""), self)
        self.softether = converge(name, common, self, self.public_ip, self.vm, self.vm.vm_id)
        self.register_outputs({"publicIp": self.public_ip})

    @staticmethod
    def _driver(args: AzureVmBridgeArgs) -> pulumi.Output[dict[str, Any]] | None:
        """The failover controller's Azure driver config: the routes it moves, to this VM."""
        if args.failover is None:
            return None
        vnet = args.vnet
        return pulumi.Output.all(
            authorization.get_client_config_output().subscription_id,
            vnet.resource_group.name,
            vnet.route_table.name,
        ).apply(
            lambda v: {
                "kind": "azure",
                "subscription_id": v[0],
                "resource_group": v[1],
                "route_table": v[2],
                "routes": list(vnet.routes),
                "next_hop_ip": str(args.common.vm.private_address),
                "endpoint": None,
            }
        )


def azure_site(
    args: list[BridgeArgs], routes: RouteTable, app_subnet: str | None, endpoint_subnet: str | None = None
) -> tuple[HybridVnet, list[AzureVmBridge]]:
    """The site's VNet (`app_subnet` delegated to App Service, `endpoint_subnet` holding its
    private endpoint) and its bridge (or pair; a pair's VMs get the role that lets them move
    the routes' next hop)."""
    site = args[0].site
    vnet = HybridVnet(site.name, HybridVnetArgs(site, routes, args[0].firewall, app_subnet, endpoint_subnet))
    access = FailoverAccess(f"{site.name}-failover", vnet) if len(args) > 1 else None
    return vnet, [AzureVmBridge(f"{a.vm.node}-bridge", AzureVmBridgeArgs(a, vnet, access)) for a in args]
