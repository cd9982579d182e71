"""The PaaS rules of a stack: the database's, the app's and the budgets', each reported as one
line `<field path>: <value> <problem>` (docs/rules.md lists each with its source)."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator

from . import catalog
from .clouds import rules
from .model import App, Budgets, CloudSite, Database, Stack, Topology, host_problem

# Each threshold becomes an actual and a forecasted alert: AWS allows 10 notifications per
# budget and 10 subscribers per notification, Azure 5 notifications per budget.
AWS_MAX_ALERTS, AWS_MAX_SUBSCRIBERS, AZURE_MAX_ALERTS = 5, 10, 2
# RDS for MySQL major versions and the end of their RDS standard support; after it, RDS
# enrolls the instance in Extended Support, billed per vCPU-hour on top of the instance. From
# AWS's "Supported MySQL major versions on Amazon RDS" (read 2026-12): 5.7 ended 2024-02-29,
# 8.0 2026-07-31; 8.4 (LTS) runs to 2029-07-31.
RDS_MYSQL_STANDARD_SUPPORT = {
    "5.7": datetime.date(2024, 2, 29),
    "8.0": datetime.date(2026, 7, 31),
    "8.4": datetime.date(2029, 7, 31),
}
# CreateDBInstance (RDS for MySQL): DBName 1-64 letters, digits or _, starting with a letter;
# MasterUsername 1-16 letters, digits or _, starting with a letter, no word the engine
# reserves (rdsadmin is RDS's own account); Port 1150-65535.
_RDS_DB_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_RDS_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,15}")
RDS_RESERVED_USERS = ("rdsadmin", "rdsrepladmin", "rdsproxyadmin", "rdstopmgr")
RDS_PORTS = (1150, 65535)
# App Service plans with Regional VNet Integration: the dedicated tiers Basic, Standard,
# Premium v2/v3/v4 ("Integrate your app with an Azure virtual network"); Free (F1) and Shared
# (D1) have none, Isolated (I*) plans live in an App Service Environment.
_APP_SKU = re.compile(r"B[1-3]|S[1-3]|P[1-3]v2|P[0-3]v3|P[1-5]mv3|P[0-3]v4|P[1-5]mv4")
_APP_SKU_WITHOUT_VNET = re.compile(r"F1|D1|Y1|I[1-6](v2)?")
# The integration subnet: /28 at least (16 addresses); Azure recommends /26.
APP_SUBNET_MAX_PREFIX = 28
# A container image reference (the distribution project's grammar: registry host[:port]/,
# lower-case path components, :tag, @digest).
_DOMAIN = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])(?:\.(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]))*(?::\d+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{{32,}})?"
)


def paas_problems(stack: Stack) -> Iterator[str]:
    net = stack.network
    if stack.database is not None:
        yield from _database(stack.database, net)
    if stack.app is not None:
        yield from _app(stack.app, net)
        if stack.database is None:
            yield "app: set without database; WordPress needs the database of this stack"
    if stack.budgets is not None and stack.budgets.enabled:
        yield from _budgets(stack.budgets, net)


def _database(db: Database, net: Topology) -> Iterator[str]:
    sites = {s.name: s for s in net.sites}
    site = sites.get(db.site)
    if site is None or site.cloud != "aws":
        yield f"database.site: {db.site} is not an AWS site of this stack"
    elif len({s.zone for s in site.subnets}) < 2:
        yield f"database.site: {db.site} has no subnets in two availability zones (RDS needs them)"
    yield from _engine_version(db.engine_version)
    classes = catalog.rds_instance_classes()
    if db.instance_class not in classes:
        yield f"database.instanceClass: {db.instance_class} is not an RDS DB instance class (catalog: {classes.name})"
    if not _RDS_DB_NAME.fullmatch(db.db_name):
        yield f"database.dbName: {db.db_name} is not an RDS MySQL database name (a letter, then letters, digits or _; 64 at most)"
    if not _RDS_USERNAME.fullmatch(db.username):
        yield f"database.username: {db.username} is not an RDS master user name (a letter, then letters, digits or _; 16 at most)"
    elif db.username.lower() in RDS_RESERVED_USERS:
        yield f"database.username: {db.username} is reserved by RDS"
    low, high = RDS_PORTS
    if not low <= db.port <= high:
        yield f"database.port: {db.port} is outside the ports RDS allows ({low}-{high})"
    for i, name in enumerate(db.allowed_from):
        if name not in sites and name != net.home.name:
            yield f"database.allowedFrom[{i}]: {name} is not a site of this stack"
        elif db.allowed_from.index(name) != i:
            yield f"database.allowedFrom[{i}]: {name} is listed twice (AWS refuses a duplicate security group rule)"


def _engine_version(version: str) -> Iterator[str]:
    """RDS for MySQL, within standard support today (UTC): after it, Extended Support bills."""
    supported = [v for v, end in RDS_MYSQL_STANDARD_SUPPORT.items() if end >= _today()]
    match = re.fullmatch(r"(\d+\.\d+)(\.\d+.*)?", version)
    if match is None:
        yield f"database.engineVersion: {version} is not a MySQL version ({supported[-1]}, or {supported[-1]}.<minor>)"
        return
    end = RDS_MYSQL_STANDARD_SUPPORT.get(match[1])
    if end is None:
        yield (
            f"database.engineVersion: {version} is not an RDS for MySQL major version in standard"
            f" support ({', '.join(supported)})"
        )
    elif end < _today():
        yield (
            f"database.engineVersion: {version} is past RDS standard support (ended {end}): RDS"
            f" bills Extended Support for it; use {supported[-1]}"
        )


def _today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


def _app(app: App, net: Topology) -> Iterator[str]:
    site = next((s for s in net.sites if s.name == app.site), None)
    if site is None or site.cloud != "azure":
        yield f"app.site: {app.site} is not an Azure site of this stack"
    else:
        subnet = next((s for s in site.subnets if s.name == app.subnet), None)
        if subnet is None:
            yield f"app.subnet: {app.subnet} is not a subnet of {app.site}"
        elif app.subnet in {vm.subnet for vm in site.bridge_vms}:
            yield (
                f"app.subnet: {app.subnet} holds the bridge VM; VNet integration needs a subnet"
                " delegated to Microsoft.Web/serverFarms alone"
            )
        elif subnet.cidr.prefixlen > APP_SUBNET_MAX_PREFIX:
            yield (
                f"app.subnet: {app.subnet} ({subnet.cidr}) is smaller than VNet integration allows"
                f" (/{APP_SUBNET_MAX_PREFIX})"
            )
    if site is not None and site.cloud == "azure":
        yield from _endpoint(app, site)
    if _APP_SKU_WITHOUT_VNET.fullmatch(app.sku):
        yield f"app.sku: {app.sku} has no Regional VNet Integration, which reaches the database; use B1 or above"
    elif not _APP_SKU.fullmatch(app.sku):
        yield f"app.sku: {app.sku} is not an App Service plan SKU (B1-B3, S1-S3, P1v2-P3v2, P0v3-P3v3, P1mv3-P5mv3, ...)"
    if not _IMAGE.fullmatch(app.image):
        yield f"app.image: {app.image!r} is not a container image reference ([registry/]name[:tag][@digest], lower-case name)"


def _endpoint(app: App, site: CloudSite) -> Iterator[str]:
    """The private endpoint's subnet and address (`access: private`); none with `public`."""
    if app.access == "public":
        for field, value in (("endpointSubnet", app.endpoint_subnet), ("endpointAddress", app.endpoint_address)):
            if value is not None:
                yield f"app.{field}: {value} is set with access public; only a private site has an endpoint"
        return
    name = app.endpoint_subnet
    if name is None:
        name = next((s.name for s in site.subnets if s.name != app.subnet), None)
        if name is None:
            yield (
                f"app.access: private needs a subnet of {site.name} besides app.subnet ({app.subnet})"
                " for the private endpoint (the integration subnet is delegated); add one or set access: public"
            )
            return
    subnet = next((s for s in site.subnets if s.name == name), None)
    if subnet is None:
        yield f"app.endpointSubnet: {name} is not a subnet of {site.name}"
        return
    if name == app.subnet:
        yield (
            f"app.endpointSubnet: {name} is app.subnet, delegated to Microsoft.Web/serverFarms;"
            " a private endpoint needs a subnet without that delegation"
        )
        return
    if app.endpoint_address is None:
        return
    why = host_problem(app.endpoint_address, subnet.cidr, rules("azure").reserved_low)
    if why is None and app.endpoint_address in {vm.private_address for vm in site.bridge_vms}:
        why = "is the bridge's address"
    if why:
        yield f"app.endpointAddress: {app.endpoint_address} {why} (the endpoint's subnet {name})"


def _budgets(budgets: Budgets, net: Topology) -> Iterator[str]:
    if not budgets.emails:
        yield "budgets.emails: empty; an alert needs somebody to receive it"
    if len(budgets.emails) > AWS_MAX_SUBSCRIBERS:
        yield f"budgets.emails: {len(budgets.emails)} addresses; AWS allows {AWS_MAX_SUBSCRIBERS} per alert"
    emails = [e.lower() for e in budgets.emails]
    for i, email in enumerate(budgets.emails):
        if emails.index(email.lower()) != i:
            yield f"budgets.emails[{i}]: {email} is listed twice (AWS refuses a duplicate subscriber)"
    for i, b in enumerate(budgets.aws):
        yield from _thresholds(f"budgets.aws[{i}].thresholds", b.thresholds, AWS_MAX_ALERTS)
    yield from _unique("budgets.aws", [b.name for b in budgets.aws])
    azure = budgets.azure
    if azure is None:
        return
    if not any(s.cloud == "azure" for s in net.sites):
        yield "budgets.azure: set but the stack has no Azure site"
    start = azure.start_date
    if start is not None and start.day != 1:
        yield f"budgets.azure.startDate: {start} is not the first day of a month (Azure requires it)"
    elif start is not None and start < _today().replace(day=1):
        yield (
            f"budgets.azure.startDate: {start} is before this month; Azure refuses a past start"
            " when it creates a budget (remove startDate: a budget keeps the start it has)"
        )
    for i, b in enumerate(azure.budgets):
        yield from _thresholds(f"budgets.azure.budgets[{i}].thresholds", b.thresholds, AZURE_MAX_ALERTS)
    yield from _unique("budgets.azure.budgets", [b.name for b in azure.budgets])


def _unique(path: str, names: list[str]) -> Iterator[str]:
    for i, name in enumerate(names):
        if names.index(name) != i:
            yield f"{path}[{i}].name: {name} is not unique"


def _thresholds(path: str, values: tuple[float, ...], most: int) -> Iterator[str]:
    if len(values) > most:
        yield f"{path}: {len(values)} thresholds; at most {most} fit (an actual and a forecast alert each)"
    for i, v in enumerate(values):
        if not 0 < v <= 1000:
            yield f"{path}[{i}]: {v:g} is not a percentage between 0 and 1000"
