"""Security invariants of the PaaS layer (issue 4), as pulumi-policy resource policies.

Property names are the engine's (camelCase). The pure checks (`mysql_rules_open_to_internet`,
`plain_secret_settings`) take properties in Pulumi's wire form, so the tests run them on what
the mocks recorded and the policies on what the engine sends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from ipaddress import IPv4Network, ip_network
from typing import Any, cast

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceRemediation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Secret,
)
from pulumi_policy.deserialize import serialize_properties

from .security import is_wire_secret, policy_props

MYSQL_PORT = 3306
INTERNET = ("0.0.0.0/0", "::/0")
# App setting names that hold credentials (WORDPRESS_DB_PASSWORD, *_SECRET, *_TOKEN, *_KEY,
# and WordPress's *_SALT).
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|KEY|SALT", re.IGNORECASE)

SettingPath = tuple[str | int, ...]
RDS_INSTANCES = ("aws:rds/instance:Instance", "aws:rds/clusterInstance:ClusterInstance")


def _rds_not_public(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type in RDS_INSTANCES and args.props.get("publiclyAccessible"):
        report(
            "publiclyAccessible is true: the database must be reachable only over the hybrid network",
            None,
        )


rds_not_public = ResourceValidationPolicy(
    name="rds-not-public",
    description="An RDS instance (or Aurora cluster instance) has no public endpoint.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_rds_not_public,
)


def _covers(protocol: Any, from_port: Any, to_port: Any, port: int) -> bool:
    if str(protocol).lower() in ("-1", "all"):
        return True
    if str(protocol).lower() not in ("tcp", "6"):
        return False
    return float(from_port or 0) <= port <= float(to_port or 0)


def mysql_rules_open_to_internet(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Descriptions of the rules in `props` that let the whole internet reach TCP 3306."""

    def check(protocol: Any, lo: Any, hi: Any, cidrs: Sequence[str], where: str) -> Iterator[str]:
        if _covers(protocol, lo, hi, MYSQL_PORT):
            yield from (f"{where} allows {c} to port {MYSQL_PORT}" for c in cidrs if c in INTERNET)

    found: list[str] = []
    if resource_type == "aws:ec2/securityGroup:SecurityGroup":
        for i, r in enumerate(props.get("ingress") or []):
            cidrs = [*(r.get("cidrBlocks") or []), *(r.get("ipv6CidrBlocks") or [])]
            found += check(
                r.get("protocol"), r.get("fromPort"), r.get("toPort"), cidrs, f"ingress[{i}]"
            )
    elif resource_type == "aws:ec2/securityGroupRule:SecurityGroupRule":
        if props.get("type") == "ingress":
            cidrs = [*(props.get("cidrBlocks") or []), *(props.get("ipv6CidrBlocks") or [])]
            found += check(
                props.get("protocol"), props.get("fromPort"), props.get("toPort"), cidrs, "rule"
            )
    elif resource_type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        cidrs = [c for c in (props.get("cidrIpv4"), props.get("cidrIpv6")) if c]
        found += check(
            props.get("ipProtocol"), props.get("fromPort"), props.get("toPort"), cidrs, "rule"
        )
    return found


def _mysql_not_open(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for problem in mysql_rules_open_to_internet(args.resource_type, args.props):
        report(problem, None)


mysql_not_open_to_internet = ResourceValidationPolicy(
    name="mysql-not-open-to-internet",
    description="No security group rule opens TCP 3306 to 0.0.0.0/0 or ::/0.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_mysql_not_open,
)


def _unwrap(value: Any) -> tuple[Any, bool]:
    return (value["value"], True) if is_wire_secret(value) else (value, False)


def plain_secret_settings(resource_type: str, props: Mapping[str, Any]) -> list[SettingPath]:
    """Paths of app setting values named like credentials that are not secrets.

    A value counts as secret when it or any property around it is one (the SDK marks the
    whole `siteConfig` secret when one setting inside it is).
    """
    if resource_type == "azure-native:web:WebApp":
        site_config, secret = _unwrap(props.get("siteConfig") or {})
        settings, list_secret = _unwrap(site_config.get("appSettings") or [])
        found: list[SettingPath] = []
        for i, item in enumerate(settings):
            pair, pair_secret = _unwrap(item)
            covered = secret or list_secret or pair_secret or is_wire_secret(pair.get("value"))
            if SECRET_NAME.search(str(pair.get("name", ""))) and not covered:
                found.append(("siteConfig", "appSettings", i, "value"))
        return found
    if resource_type == "azure-native:web:WebAppApplicationSettings":
        values, secret = _unwrap(props.get("properties") or {})
        return [
            ("properties", k)
            for k, v in values.items()
            if SECRET_NAME.search(k) and not (secret or is_wire_secret(v))
        ]
    return []


def _remediate_secret_settings(args: ResourceValidationArgs) -> Mapping[str, Any] | None:
    # pulumi-policy strips secrecy from the props a `validate` sees; only a remediation gets
    # them with their Secret marks, and serialize_properties turns those back into wire form.
    wire = serialize_properties(args.props)
    paths = plain_secret_settings(args.resource_type, wire)
    if not paths:
        return None
    fixed = policy_props(wire)
    for path in paths:
        holder = fixed
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = Secret(holder[path[-1]])
    return fixed


app_secret_settings_are_secret = ResourceValidationPolicy(
    name="app-secret-settings-are-secret",
    description="App Service settings that hold credentials are Pulumi secrets (encrypted in the state).",
    enforcement_level=EnforcementLevel.REMEDIATE,
    # pulumi-policy takes a plain (non-awaitable) result too; its type hint lists only awaitables.
    remediate=cast(ResourceRemediation, _remediate_secret_settings),
)

WEB_APP = "azure-native:web:WebApp"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"


def public_site_problems(props: Mapping[str, Any], access: str, operator: str | None) -> list[str]:
    """Why a web app (props as a policy sees them) has a public door that `app.access` does
    not allow: with `private`, any public network access; with `public`, access restrictions
    that admit more than the operator's range."""
    if access != "public":
        value = _plain(props.get("publicNetworkAccess"))
        if value != "Disabled":
            return [f"publicNetworkAccess is {value or 'unset (Enabled)'}: app.access is private, the site answers at its private endpoint only"]
        return []
    config = _plain(props.get("siteConfig")) or {}
    found = []
    if _plain(config.get("ipSecurityRestrictionsDefaultAction")) != "Deny":
        found.append("siteConfig.ipSecurityRestrictionsDefaultAction is not Deny: a public site admits operatorCidr only")
    allowed = _ip_network(operator) if operator else None
    for i, rule in enumerate(_plain(config.get("ipSecurityRestrictions")) or []):
        if str(_plain(rule.get("action")) or "Allow").lower() != "allow":
            continue
        net = _ip_network(str(_plain(rule.get("ipAddress")) or ""))
        if net is None or allowed is None or not net.subnet_of(allowed):
            found.append(f"siteConfig.ipSecurityRestrictions[{i}] admits {_plain(rule.get('ipAddress'))}, outside operatorCidr {operator}")
    return found


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Secret) else value


def _ip_network(text: str) -> IPv4Network | None:
    try:
        net = ip_network(text, strict=False)
    except ValueError:
        return None
    return net if isinstance(net, IPv4Network) else None


def _no_public_site(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != WEB_APP:
        return
    config = args.get_config()
    for problem in public_site_problems(args.props, config.get("appAccess", "private"), config.get("operatorCidr")):
        report(f"{args.name}: {problem}", None)


no_public_site = ResourceValidationPolicy(
    name="no-public-site",
    description="A web app has no public network access unless app.access is public, and then admits operatorCidr only (default Deny).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_no_public_site,
    config_schema=PolicyConfigSchema(
        properties={"appAccess": {"type": "string", "enum": ["private", "public"]}, "operatorCidr": {"type": "string"}},
        required=["operatorCidr"],
    ),
)


def public_storage_problems(props: Mapping[str, Any]) -> list[str]:
    """Why a storage account (props as a policy sees them) is reachable from outside the
    VNet: public blobs, or a public endpoint whose firewall does not deny by default or admits
    internet ranges."""
    found = []
    if _plain(props.get("allowBlobPublicAccess")) is not False:
        found.append("allowBlobPublicAccess is not false")
    if _plain(props.get("publicNetworkAccess")) == "Disabled":
        return found
    rules = _plain(props.get("networkRuleSet")) or {}
    if _plain(rules.get("defaultAction")) != "Deny":
        found.append("networkRuleSet.defaultAction is not Deny: the account answers the whole internet")
    for i, rule in enumerate(_plain(rules.get("ipRules")) or []):
        found.append(f"networkRuleSet.ipRules[{i}] admits {_plain(rule.get('iPAddressOrRange'))} from the internet")
    return found


def _storage_not_public(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == STORAGE_ACCOUNT:
        for problem in public_storage_problems(args.props):
            report(f"{args.name}: {problem}; it must be reachable from the VNet only", None)


storage_not_public = ResourceValidationPolicy(
    name="storage-not-public",
    description="A storage account is reachable from the VNet only: no public blobs, and its public endpoint (if on) denies by default and admits no internet range.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_storage_not_public,
)

POLICIES = [
    rds_not_public,
    mysql_not_open_to_internet,
    app_secret_settings_are_secret,
    no_public_site,
    storage_not_public,
]
