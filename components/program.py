"""The Pulumi program as a function: stack -> routing plan -> components -> exports."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, assert_never

import pulumi

from softether.outputs import node_output, status_output
from topology import RoutingPlan, Stack, Topology, TopologyError, parse_stack, plan_routes
from topology.clouds import REGION_KEY
from topology.cost import check_budgets, credit_alarm_emails, credit_alarm_threshold, load_prices
from topology.load import PROJECT

from .app import WordPressApp, WordPressAppArgs
from .aws import Ec2Bridge, HybridVpc, aws_site
from .azure import AzureVmBridge, HybridVnet, azure_site
from .bridge import SSH_USER, BridgeArgs
from .budgets import Budgets, BudgetsArgs, CreditAlarm, CreditAlarmArgs, depend_on_budgets
from .database import PrivateMysql, PrivateMysqlArgs
from .firewall import bridge_ruleset, firewall_rules
from .home import HomeLan, HomeLanArgs
from .node import node_specs, spec_of
from .secrets import KEY_FILE, HybridSecrets, home_admin_password, operator_key


def stack_from_config(source: str | None = None) -> Stack:
    """The stack from the config Pulumi hands the program; raises `TopologyError` (one line
    per problem) before any resource exists."""
    cfg = pulumi.Config(PROJECT)
    keys = (f.alias or name for name, f in Stack.model_fields.items())
    config = {k: _value(v) for k in keys if (v := cfg.get(k)) is not None}
    regions = {
        cloud: region
        for cloud, key in REGION_KEY.items()
        if (region := pulumi.Config(key.split(":")[0]).get(key.split(":")[1]))
    }
    source = source or f"stack {pulumi.get_stack()}"
    stack = parse_stack(config, source, regions)
    # As `hybrid check` does: Azure budget amounts against the stack's own estimate.
    found, _ = check_budgets(stack, {REGION_KEY[cloud]: r for cloud, r in regions.items()})
    if found:
        raise TopologyError(source, found)
    return stack


def _value(raw: str) -> Any:
    """Pulumi hands structured values as JSON and plain ones (`homeHostKey`) as they are."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def run() -> None:
    """The entry point under `pulumi up`: a stack that fails validation stops with its
    one-line problems (a RunError prints no traceback) before any resource exists."""
    try:
        stack = stack_from_config()
        exports = build(stack)
    except TopologyError as e:
        raise pulumi.RunError(str(e)) from None
    for key, value in exports.items():
        pulumi.export(key, value)


@dataclass
class Network:
    """The part-1 network as built: what the PaaS components attach to."""

    plan: RoutingPlan
    home: HomeLan
    secrets: HybridSecrets
    sites: dict[str, HybridVpc | HybridVnet] = field(default_factory=dict)
    # By node name (model.BridgeVm.node): a site's first bridge under the site's name.
    bridges: dict[str, Ec2Bridge | AzureVmBridge] = field(default_factory=dict)
    # What `hybrid status` needs of each node (softether/outputs.py): a secret, it holds the specs.
    status: dict[str, pulumi.Output[dict[str, Any]]] = field(default_factory=dict)


def build(stack: Stack) -> dict[str, Any]:
    """Create every resource of `stack`; return the stack exports. The budgets come first:
    everything that bills depends on them, so a destroy that stops half-way keeps them."""
    budgets = None
    if stack.budgets is not None:
        budgets = Budgets("budgets", BudgetsArgs(stack.budgets))
        depend_on_budgets(budgets)
    net = build_network(stack)
    return network_exports(stack.network, net) | build_paas(stack, net, budgets)


def build_network(stack: Stack) -> Network:
    topo = stack.network
    plan = plan_routes(topo)
    source = f"stack {pulumi.get_stack()}"
    home_admin = home_admin_password(source)
    operator = operator_key(source)
    secrets = HybridSecrets("secrets", topo, home_admin, operator, stack.rotation)
    specs = node_specs(topo, plan, secrets)
    home = HomeLan(
        topo.home.name,
        HomeLanArgs(
            topo,
            plan,
            spec_of(specs, None),
            secrets.operator_private_key,
            stack.home_host_key,
            admin_password_known=home_admin is not None,
            operator_key_known=operator is not None,
        ),
    )
    out = Network(plan=plan, home=home, secrets=secrets)
    ssh = topo.home.vpn_server.ssh
    out.status[topo.home.name] = spec_of(specs, None).apply(
        lambda spec: node_output("server", ssh.host, ssh.port, ssh.user, stack.home_host_key, spec)
    )
    if home.softether is not None:
        # Once the home server is converged, its certificate is pinned in every cascade.
        specs = node_specs(topo, plan, secrets, home.softether.certificate)
    else:
        # Nothing configures the home server in this run: the bridges' cascades cannot
        # carry traffic yet, so their traffic check waits for it (outputs `pending`).
        specs = node_specs(topo, plan, secrets, home_ready=False)
    rules, ruleset = firewall_rules(stack), bridge_ruleset(stack)
    for site in topo.sites:
        args = [
            BridgeArgs(
                network=topo,
                site=site,
                vm=vm,
                firewall=rules.bridges[site.name],
                ruleset=ruleset,
                host_key_private=secrets.host_keys[vm.node].private_key_openssh,
                host_key_public=secrets.host_keys[vm.node].public_key_openssh,
                operator_public_key=secrets.operator_public_key,
                operator_private_key=secrets.operator_private_key,
                spec=spec_of(specs, vm.node),
                after=(home.softether,) if home.softether else (),
            )
            for vm in site.bridge_vms
        ]
        table = plan.route_table(site.name)
        bridges: list[Ec2Bridge] | list[AzureVmBridge]
        match site.cloud:
            case "aws":
                out.sites[site.name], bridges = aws_site(args, table)
            case "azure":
                app, endpoint = stack.app, stack.app_endpoint
                delegated = app.subnet if app is not None and app.site == site.name else None
                holder = endpoint.subnet if endpoint is not None and endpoint.site == site.name else None
                out.sites[site.name], bridges = azure_site(args, table, delegated, holder)
            case _:
                assert_never(site.cloud)
        for a, bridge in zip(args, bridges, strict=True):
            out.bridges[a.vm.node] = bridge
            # The host key the bridge holds after its first converge (its user data's is retired).
            out.status[a.vm.node] = pulumi.Output.all(
                bridge.public_ip, bridge.softether.host_key, a.spec
            ).apply(
                lambda v, ip=a.vm.private_address: node_output(
                    "bridge", v[0], 22, SSH_USER, v[1].strip(), v[2], ip
                )
            )
    return out


def network_exports(topo: Topology, net: Network) -> dict[str, Any]:
    """Public facts only: addresses, commands, the manual steps; no secret."""
    return {
        "routes": net.plan.to_json(),
        "home": net.home.steps.to_json() | home_softether(net.home),
        "pending": net.home.pending,
        "operatorPublicKey": net.secrets.operator_public_key,
        "bridges": {
            vm.node: {
                "cloud": s.cloud,
                "publicIp": net.bridges[vm.node].public_ip,
                "privateAddress": str(vm.private_address),
                "transitAddress": str(vm.transit_address),
                # A new one at the first converge: the user data's served the first contact only.
                "hostKey": net.bridges[vm.node].softether.host_key,
                "ssh": net.bridges[vm.node].public_ip.apply(
                    lambda ip: f"ssh -i {KEY_FILE} {SSH_USER}@{ip}"
                ),
                # A pair's bridge: the site's virtual address, on whichever bridge is active.
                **(
                    {"site": s.name, "pair": vm.role, "virtualAddress": str(s.bridge.transit_address)}
                    if vm.role
                    else {}
                ),
            }
            for s in topo.sites
            for vm in s.bridge_vms
        },
        "checks": check_commands(topo),
        "status": pulumi.Output.secret(
            pulumi.Output.all(**net.status).apply(
                lambda nodes: status_output(
                    pulumi.get_stack(), topo.home.vpn_server.transit_address, status_hosts(topo), nodes
                )
            )
        ),
    }


def status_hosts(topo: Topology) -> dict[str, IPv4Address]:
    """An address per node for `hybrid status` to ping: the home VPN server, each bridge."""
    server = topo.home.vpn_server
    return {topo.home.name: server.host_address or server.lan_address} | {
        vm.node: vm.private_address for vm in topo.bridge_vms
    }


def home_softether(home: HomeLan) -> dict[str, Any]:
    """What the home node took over on the user's server and what it leaves alone."""
    if home.softether is None:
        return {}
    return {"adopted": home.softether.adopted, "untouched": home.softether.untouched}


def check_commands(topo: Topology) -> dict[str, list[str]]:
    """From each site (a home host; a cloud site's bridge), a ping to every other site's VPN
    node: the paths between the sites let the VPN nodes answer each other's pings."""
    server = topo.home.vpn_server
    nodes = {topo.home.name: str(server.lan_address)}
    nodes |= {vm.node: str(vm.private_address) for vm in topo.bridge_vms}
    return {
        src: [f"ping -c 3 {addr}  # {dst}" for dst, addr in nodes.items() if dst != src]
        for src in nodes
    }


def build_paas(stack: Stack, net: Network, budgets: Budgets | None = None) -> dict[str, Any]:
    """The PaaS and the rest of the cost backstops on top of the network; returns their exports.

    RDS (components/database.py) goes into the database site's HybridVpc, WordPress on App
    Service (app.py) into the app site's HybridVnet, integrated into `stack.app.subnet`
    (delegated to Microsoft.Web/serverFarms by `azure_site`); resource-group budgets
    (budgets.py) get the Azure sites' groups; the AWS bridges in unlimited CPU credit mode get
    the credit alarm, mailing the budgets' addresses.
    """
    exports: dict[str, Any] = {}
    db = None
    if stack.database is not None:
        vpc = net.sites[stack.database.site]
        assert isinstance(vpc, HybridVpc)  # topology/validate.py: an AWS site
        db_firewall = firewall_rules(stack).database
        assert db_firewall is not None  # the stack has a database
        db = PrivateMysql(
            "wordpress-db",
            PrivateMysqlArgs(stack.database, stack.network, db_firewall, vpc.vpc.id, vpc.subnets),
        )
        exports["databaseHost"] = db.address
    if stack.app is not None:
        if db is None:
            raise TopologyError(f"stack {pulumi.get_stack()}", ["app: WordPress needs hybrid-cloud:database, which is missing"])
        vnet = net.sites[stack.app.site]
        assert isinstance(vnet, HybridVnet)  # topology/validate.py: an Azure site
        app = WordPressApp(
            "wordpress",
            WordPressAppArgs(
                config=stack.app,
                resource_group_name=vnet.resource_group.name,
                resource_group_id=vnet.resource_group.id,
                location=vnet.resource_group.location,
                subnet=vnet.subnets[stack.app.subnet],
                # The RDS endpoint's private address, resolved here: App Service reaches it
                # through the integration subnet's routes and the tunnels.
                db_host=db.address,
                db_port=db.port,
                db_name=db.db_name,
                db_user=db.username,
                db_password=db.password,
                operator_cidr=stack.network.operator_cidr,
                admin_email=stack.app_admin_email,
                vnet_id=vnet.vnet.id,
                endpoint=stack.app_endpoint,
                endpoint_subnet=vnet.subnets[e.subnet] if (e := stack.app_endpoint) else None,
            ),
        )
        exports["siteUrl"] = app.url
        # Private: the names and the address a home resolver or hosts file needs; public: who
        # may reach it.
        exports["app"] = app.access
        # `pulumi stack output --show-secrets wordpressAdmin`: WordPress's admin, installed at
        # deploy time (the installer is never left to a first visitor).
        exports["wordpressAdmin"] = app.admin
    if budgets is not None:
        budgets.for_groups({n: s.resource_group for n, s in net.sites.items() if isinstance(s, HybridVnet)})
        currency = budgets.currency_check()
        if currency is not None:
            exports["budgetCurrency"] = currency
    unlimited = {
        vm.node: (bridge.instance.id, site.region)
        for site in stack.network.sites
        for vm in site.bridge_vms
        if site.cpu_credits == "unlimited" and isinstance(bridge := net.bridges[vm.node], Ec2Bridge)
    }
    emails = credit_alarm_emails(stack)
    if unlimited and emails:
        threshold = credit_alarm_threshold(stack, load_prices())
        CreditAlarm("bridge-credits", CreditAlarmArgs(unlimited, emails, threshold))
    return exports
