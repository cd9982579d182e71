"""The typed description of a hybrid-cloud stack and the routing plan derived from it.

Pure: imports only pydantic, PyYAML and the standard library (a test guards that no Pulumi
module is loaded), so the lab, the SoftEther reconciler and the CLI can use it without the
cloud SDKs.
"""

from .load import (
    TopologyError,
    load_stack,
    load_stack_config,
    parse_stack,
    project_config,
    provider_regions,
    read_stack_file,
    read_text_file,
    stack_file,
)
from .model import (
    AllowedPath,
    App,
    AwsBudget,
    AzureBudget,
    AzureBudgets,
    Bridge,
    Budgets,
    CloudSite,
    Database,
    HomeSite,
    SoftEtherOptions,
    Stack,
    Subnet,
    Topology,
    Transit,
    VpnServer,
)
from .routing import (
    BridgeHost,
    L3Interface,
    L3Route,
    L3Switch,
    OsRoute,
    RouteTable,
    RoutingPlan,
    plan_routes,
)

__all__ = [
    "AllowedPath",
    "App",
    "AwsBudget",
    "AzureBudget",
    "AzureBudgets",
    "Bridge",
    "BridgeHost",
    "Budgets",
    "CloudSite",
    "Database",
    "HomeSite",
    "L3Interface",
    "L3Route",
    "L3Switch",
    "OsRoute",
    "RouteTable",
    "RoutingPlan",
    "SoftEtherOptions",
    "Stack",
    "Subnet",
    "Topology",
    "TopologyError",
    "Transit",
    "VpnServer",
    "load_stack",
    "load_stack_config",
    "parse_stack",
    "plan_routes",
    "project_config",
    "provider_regions",
    "read_stack_file",
    "read_text_file",
    "stack_file",
]
