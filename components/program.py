"""The Pulumi program as a function: stack -> routing plan -> components -> exports."""

from __future__ import annotations

from typing import Any

import pulumi

from topology import Stack, TopologyError, parse_stack, plan_routes
from topology.load import PROJECT

from .app import WordPressApp, WordPressAppArgs
from .aws_network import HybridVpc, HybridVpcArgs
from .azure_network import HybridVnet, HybridVnetArgs
from .budgets import Budgets, BudgetsArgs
from .database import PrivateMysql, PrivateMysqlArgs


def stack_from_config(source: str | None = None) -> Stack:
    """The stack from the config Pulumi hands the program; raises `TopologyError` (one line
    per problem) before any resource exists."""
    cfg = pulumi.Config(PROJECT)
    keys = (f.alias or name for name, f in Stack.model_fields.items())
    config = {k: v for k in keys if (v := cfg.get_object(k)) is not None}
    return parse_stack(config, source or f"stack {pulumi.get_stack()}")


def build(stack: Stack) -> dict[str, Any]:
    """Create every resource of `stack`; return the stack exports."""
    net = stack.network
    plan = plan_routes(net)
    app_subnet = stack.app.subnet if stack.app else None
    sites: dict[str, HybridVpc | HybridVnet] = {}
    for site in net.sites:
        if site.cloud == "aws":
            sites[site.name] = HybridVpc(site.name, HybridVpcArgs(site, plan.route_table(site.name)))
        else:
            sites[site.name] = HybridVnet(
                site.name,
                HybridVnetArgs(
                    net,
                    site,
                    plan.route_table(site.name),
                    app_subnet if stack.app and stack.app.site == site.name else None,
                ),
            )
    exports: dict[str, Any] = {"routes": plan.to_json()}
    exports |= build_paas(stack, sites)
    return exports


def build_paas(stack: Stack, sites: dict[str, HybridVpc | HybridVnet]) -> dict[str, Any]:
    """The PaaS and budget components on top of the network; returns their exports.

    --- PaaS / budgets go here (components/database.py, app.py, budgets.py) --------------
    `sites[name]` is the site's HybridVpc (`.vpc`, `.subnets`, `.route_table`) or HybridVnet
    (`.resource_group`, `.vnet`, `.subnets`, `.route_table`); `stack.app.subnet` is delegated
    to Microsoft.Web/serverFarms.
    """
    exports: dict[str, Any] = {}
    db = None
    if stack.database is not None:
        vpc = sites[stack.database.site]
        assert isinstance(vpc, HybridVpc)  # topology/validate.py: an AWS site
        db = PrivateMysql(
            "wordpress-db",
            PrivateMysqlArgs(stack.database, stack.network, vpc.vpc.id, vpc.subnets),
        )
        exports["databaseHost"] = db.address
    if stack.app is not None:
        if db is None:
            raise TopologyError(f"stack {pulumi.get_stack()}", ["app: WordPress needs hybrid-cloud:database, which is missing"])
        vnet = sites[stack.app.site]
        assert isinstance(vnet, HybridVnet)  # topology/validate.py: an Azure site
        app = WordPressApp(
            "wordpress",
            WordPressAppArgs(
                config=stack.app,
                resource_group_name=vnet.resource_group.name,
                location=vnet.resource_group.location,
                subnet=vnet.subnets[stack.app.subnet],
                # The RDS endpoint's private address, resolved here: App Service reaches it
                # through the integration subnet's routes and the tunnels.
                db_host=db.address,
                db_port=db.port,
                db_name=db.db_name,
                db_user=db.username,
                db_password=db.password,
            ),
        )
        exports["siteUrl"] = app.url
    if stack.budgets is not None:
        groups = {n: s.resource_group.id for n, s in sites.items() if isinstance(s, HybridVnet)}
        Budgets("budgets", BudgetsArgs(stack.budgets, groups))
    return exports
