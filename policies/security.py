"""The security invariants of a hybrid-cloud stack, as `pulumi_policy` resource policies.

The same `POLICIES` serve two ways:
- live: `pulumi preview --policy-pack policies` (policies/__main__.py builds the pack; each
  policy's config (`policy_config`: the operator's CIDR, the hybrid, home and App Service
  ranges, SoftEther's ports) via `--policy-pack-config`, as `hybrid plan --policy-config`
  writes it);
- offline: `evaluate(records, config)` calls each policy's `validate` on what the Pulumi mocks
  recorded (`components.offline`), so CI checks them with no engine and no credentials.

Offline, a secret input arrives as a `pulumi_policy.Secret` (the engine's wire form keeps the
marker); the live SDK hands validations plain values, so `no-plain-secret` cannot tell a
secret from a plain value there and is advisory in the live pack.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Secret,
)
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY

from topology import Stack
from topology.model import RULESET_FILE

ADMIN_PORTS = (22, 5555, 3306)  # SSH, SoftEther, MySQL
SSH = 22
# What SoftEther listens on when nobody changed it (a fresh server: 443, 992, 1194, 5555); the
# stack's own port comes with the config.
SOFTETHER_PORTS = (443, 992, 1194, 5555)
ANYWHERE = ("0.0.0.0/0", "::/0", "*", "any", "internet")
SECRET_KEY = re.compile(r"(?i)(password|passwd|secret|private_?key)")
PRIVATE_KEY_BLOCK = "PRIVATE KEY-----"

AWS_SG = "aws:ec2/securityGroup:SecurityGroup"
AWS_SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
AWS_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
AZURE_NSG = "azure-native:network:NetworkSecurityGroup"
AZURE_RULE = "azure-native:network:SecurityRule"
AWS_VM = "aws:ec2/instance:Instance"
AZURE_VM = "azure-native:compute:VirtualMachine"
SOFTETHER_NODE = "pulumi-python:dynamic/softether:SoftEtherNode"


# --- ingress rules, normalised over the resource types that carry them ----------------------


@dataclass(frozen=True)
class Rule:
    """One allow-inbound rule: `sources` may reach `ports` (inclusive ranges; None: all) of
    `destinations` (None: any, as every rule of an AWS security group)."""

    sources: tuple[str, ...]
    ports: tuple[tuple[int, int], ...] | None
    destinations: tuple[str, ...] | None = None

    def covers(self, port: int) -> bool:
        return self.ports is None or any(lo <= port <= hi for lo, hi in self.ports)


def _aws_rule(r: Mapping[str, Any], sources_keys: tuple[str, ...], proto_key: str) -> Rule:
    sources = tuple(s for k in sources_keys for s in _as_list(r.get(k)))
    if str(r.get(proto_key, "")).lower() in ("-1", "all"):
        return Rule(sources, None)
    low, high = int(r.get("fromPort") or 0), int(r.get("toPort") or 0)
    return Rule(sources, ((low, high),))


def _azure_rule(r: Mapping[str, Any]) -> Rule | None:
    props = r.get("properties", r)  # azure-native accepts both shapes
    if (
        str(props.get("direction", "")).lower() != "inbound"
        or str(props.get("access", "")).lower() != "allow"
    ):
        return None
    sources = (
        *_as_list(props.get("sourceAddressPrefix")),
        *_as_list(props.get("sourceAddressPrefixes")),
    )
    ranges = (
        *_as_list(props.get("destinationPortRange")),
        *_as_list(props.get("destinationPortRanges")),
    )
    dests = (
        *_as_list(props.get("destinationAddressPrefix")),
        *_as_list(props.get("destinationAddressPrefixes")),
    )
    destinations = None if not dests or any(str(d).lower() in ANYWHERE for d in dests) else dests
    if not ranges or "*" in ranges:
        return Rule(sources, None, destinations)
    ports = []
    for p in ranges:  # "22" or "1000-2000"
        a, _, b = str(p).partition("-")
        ports.append((int(a), int(b or a)))
    return Rule(sources, tuple(ports), destinations)


def ingress_rules(resource_type: str, props: Mapping[str, Any]) -> list[Rule]:
    """Every allow-inbound rule a resource declares (empty for other types)."""
    if resource_type == AWS_SG:
        return [
            _aws_rule(r, ("cidrBlocks", "ipv6CidrBlocks"), "protocol")
            for r in _as_list(props.get("ingress"))
        ]
    if resource_type == AWS_SG_RULE and props.get("type") == "ingress":
        return [_aws_rule(props, ("cidrBlocks", "ipv6CidrBlocks"), "protocol")]
    if resource_type == AWS_INGRESS_RULE:
        return [_aws_rule(props, ("cidrIpv4", "cidrIpv6"), "ipProtocol")]
    if resource_type == AZURE_NSG:
        return [r for raw in _as_list(props.get("securityRules")) if (r := _azure_rule(raw))]
    if resource_type == AZURE_RULE:
        rule = _azure_rule(props)
        return [rule] if rule else []
    return []


def _as_list(value: Any) -> list[Any]:
    value = _reveal(value)
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _reveal(value: Any) -> Any:
    return value.value if isinstance(value, Secret) else value


def _network(source: str) -> IPv4Network | None:
    try:
        net = ip_network(source, strict=False)
    except ValueError:
        return None
    return net if isinstance(net, IPv4Network) else None


# --- the policies ---------------------------------------------------------------------------


def _no_open_admin_ports(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for rule in ingress_rules(args.resource_type, args.props):
        for source in rule.sources:
            if str(source).lower() not in ANYWHERE:
                continue
            for port in ADMIN_PORTS:
                if rule.covers(port):
                    report(f"{args.name}: port {port} is open to {source}", None)


def _ssh_only_from_operator(args: ResourceValidationArgs, report: ReportViolation) -> None:
    config = args.get_config()
    allowed = [
        n
        for s in (config.get("operatorCidr"), *config.get("hybridRanges", []))
        if s and (n := _network(s))
    ]
    for rule in ingress_rules(args.resource_type, args.props):
        if not rule.covers(SSH):
            continue
        for source in rule.sources:
            net = _network(str(source))
            if net is None or not any(net.subnet_of(a) for a in allowed):
                report(
                    f"{args.name}: SSH is open to {source}, outside the operator's {config.get('operatorCidr')}",
                    None,
                )


def _networks(values: Iterable[Any]) -> list[IPv4Network]:
    return [n for v in values if (n := _network(str(v)))]


def _overlaps(source: str, ranges: list[IPv4Network]) -> bool:
    """A rule's source or destination (a range, `*`/any, or a service tag) meets `ranges`."""
    if str(source).lower() in ANYWHERE:
        return True
    net = _network(str(source))
    return net is not None and any(net.overlaps(r) for r in ranges)


def _no_app_to_home(args: ResourceValidationArgs, report: ReportViolation) -> None:
    config = args.get_config()
    apps, homes = _networks(config.get("appRanges", [])), _networks(config.get("homeRanges", []))
    nsg = args.resource_type in (AZURE_NSG, AZURE_RULE)
    for rule in ingress_rules(args.resource_type, args.props) if apps else ():
        for source in (s for s in rule.sources if _overlaps(s, apps)):
            what = f"{args.name}: admits the App Service subnet ({source})"
            if rule.destinations is not None:
                if any(_overlaps(d, homes) for d in rule.destinations):
                    report(f"{what} to a home range", None)
            elif nsg:
                report(f"{what} to any destination, the home LAN included", None)
            elif rule.ports is None:
                # An SG names no destination: through a bridge, every port means the home
                # LAN's too; a port of its own (the database's) is the VM filter's to hold.
                report(f"{what} on every port (an SG names no destination: the home LAN included)", None)


def _no_app_to_home_in_ruleset(args: ResourceValidationArgs, report: ReportViolation) -> None:
    config = args.get_config()
    apps, homes = _networks(config.get("appRanges", [])), _networks(config.get("homeRanges", []))
    if not apps or args.resource_type not in (AWS_VM, AZURE_VM):
        return
    for line in ruleset_accepts(_user_data(args.resource_type, args.props)):
        sources, destinations = line
        if any(_overlaps(s, apps) for s in sources) and any(_overlaps(d, homes) for d in destinations):
            report(
                f"{args.name}: the bridge's forwarding filter ({RULESET_FILE}) accepts the App Service"
                f" subnet ({', '.join(sources)}) to a home range ({', '.join(destinations)})",
                None,
            )


def _user_data(resource_type: str, props: Mapping[str, Any]) -> str | None:
    """A bridge VM's cloud-config text (Azure's customData decoded)."""
    if resource_type == AWS_VM:
        text = _reveal(props.get("userData"))
        return text if isinstance(text, str) else None
    encoded = _reveal((_reveal(props.get("osProfile")) or {}).get("customData"))
    return _text("customData", encoded) if isinstance(encoded, str) else None


_NFT_ACCEPT = re.compile(r"ip saddr \{ ([^}]*) \} ip daddr \{ ([^}]*) \}[^\n]* accept")


def ruleset_accepts(cloud_config: str | None) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(sources, destinations) of each accept rule of the nftables ruleset cloud-init writes
    to RULESET_FILE (components/firewall.py `bridge_ruleset`)."""
    if not cloud_config:
        return []
    import yaml

    try:
        doc = yaml.safe_load(cloud_config)
    except yaml.YAMLError:
        return []
    files = (doc.get("write_files") or []) if isinstance(doc, dict) else []
    text = "\n".join(str(f.get("content", "")) for f in files if isinstance(f, dict) and f.get("path") == RULESET_FILE)
    return [
        (tuple(a.strip() for a in m[1].split(",")), tuple(a.strip() for a in m[2].split(",")))
        for m in _NFT_ACCEPT.finditer(text)
    ]


def _softether_not_from_internet(args: ResourceValidationArgs, report: ReportViolation) -> None:
    config = args.get_config()
    hybrid = _networks(config.get("hybridRanges", []))
    ports = sorted({*SOFTETHER_PORTS, *config.get("softetherPorts", [])})
    for rule in ingress_rules(args.resource_type, args.props):
        for source in rule.sources:
            net = _network(str(source))
            if net is not None and any(net.subnet_of(h) for h in hybrid):
                continue  # from the hybrid network itself
            opened = [p for p in ports if rule.covers(p)]
            if opened:
                report(
                    f"{args.name}: SoftEther's port {', '.join(map(str, opened))} is open to"
                    f" {source}, outside the hybrid ranges (the cloud bridges dial out; their"
                    " administration is local only)",
                    None,
                )


def _no_plain_secret(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for path in plain_secrets(args.props):
        report(f"{args.name}: {path} holds a secret as a plain value", None)


def plain_secrets(value: Any, path: str = "", named: bool = False) -> Iterator[str]:
    """Paths of values that look secret (by key name, or a private-key block) but are not
    Pulumi secrets. `{"name": "X_PASSWORD", "value": ...}` pairs count as named."""
    if isinstance(value, Secret):
        return
    if isinstance(value, Mapping):
        pair = isinstance(value.get("name"), str) and SECRET_KEY.search(value["name"])
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            yield from plain_secrets(
                v, sub, bool(SECRET_KEY.search(str(k))) or (bool(pair) and k == "value")
            )
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from plain_secrets(v, f"{path}[{i}]", named)
    elif isinstance(value, str) and value and (named or PRIVATE_KEY_BLOCK in _text(path, value)):
        yield path


def _text(path: str, value: str) -> str:
    """`value`, decoded when it is Azure's base64 customData (which would hide a key block)."""
    if not path.endswith("customData"):
        return value
    try:
        return base64.b64decode(value, validate=True).decode(errors="replace")
    except ValueError:
        return value


def _bridge_host_key_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == SOFTETHER_NODE:
        # The converge must check the key it connects to, or pinning it on the VM is moot.
        target = _reveal(args.props.get("target")) or {}
        if not str(_reveal(target.get("host_key")) or "").startswith("ssh-"):
            report(f"{args.name}: the SSH target has no pinned host key", None)
        return
    if args.resource_type == AWS_VM:
        text = _reveal(args.props.get("userData"))
    elif args.resource_type == AZURE_VM:
        encoded = _reveal((_reveal(args.props.get("osProfile")) or {}).get("customData"))
        text = _text("customData", encoded) if isinstance(encoded, str) else None
    else:
        return
    if not host_key_pinned(text):
        report(f"{args.name}: cloud-init does not install a pinned SSH host key", None)


def host_key_pinned(cloud_config: str | None) -> bool:
    """cloud-init installs the program's host key and generates none of its own."""
    if not cloud_config:
        return False
    import yaml

    try:
        doc = yaml.safe_load(cloud_config)
    except yaml.YAMLError:
        return False
    if not isinstance(doc, dict):
        return False
    keys = doc.get("ssh_keys") or {}
    # The schema needs a non-empty `ssh_genkeytypes`; naming only the given types keeps any
    # other key from being generated (cloud-init generates none while `ssh_keys` is given).
    given = {k.removesuffix("_private") for k in keys if k.endswith("_private")}
    return (
        doc.get("ssh_deletekeys") is True
        and set(doc.get("ssh_genkeytypes") or []) <= given
        and PRIVATE_KEY_BLOCK in str(keys.get("ed25519_private", ""))
        and str(keys.get("ed25519_public", "")).startswith("ssh-ed25519 ")
    )


SSH_CONFIG = PolicyConfigSchema(
    properties={
        "operatorCidr": {"type": "string"},
        "hybridRanges": {"type": "array", "items": {"type": "string"}},
    },
    required=["operatorCidr"],
)

APP_CONFIG = PolicyConfigSchema(
    properties={
        "appRanges": {"type": "array", "items": {"type": "string"}},
        "homeRanges": {"type": "array", "items": {"type": "string"}},
    },
    required=["homeRanges"],
)
SOFTETHER_CONFIG = PolicyConfigSchema(
    properties={
        "hybridRanges": {"type": "array", "items": {"type": "string"}},
        "softetherPorts": {"type": "array", "items": {"type": "integer"}},
    },
    required=["hybridRanges"],
)

POLICIES: tuple[ResourceValidationPolicy, ...] = (
    ResourceValidationPolicy(
        name="no-open-admin-ports",
        description="No ingress from 0.0.0.0/0 on SSH (22), SoftEther (5555) or MySQL (3306).",
        validate=_no_open_admin_ports,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="ssh-only-from-operator",
        description="SSH only from the operator's CIDR (or the hybrid network's own ranges).",
        validate=_ssh_only_from_operator,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=SSH_CONFIG,
    ),
    ResourceValidationPolicy(
        name="no-app-to-home",
        description="No SG/NSG rule, and no path in a bridge's forwarding filter, admits the App Service subnet to a home range (or to every port, where an SG names no destination).",
        validate=[_no_app_to_home, _no_app_to_home_in_ruleset],
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=APP_CONFIG,
    ),
    ResourceValidationPolicy(
        name="softether-not-from-internet",
        description="No SG/NSG rule opens a SoftEther port (443, 992, 1194, 5555, the stack's) to a source outside the hybrid ranges.",
        validate=_softether_not_from_internet,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=SOFTETHER_CONFIG,
    ),
    ResourceValidationPolicy(
        name="no-plain-secret",
        description="Passwords, private keys and user data that carries them are Pulumi secrets.",
        validate=_no_plain_secret,
        # Live, the SDK strips the secret marker before validation: advisory there.
        enforcement_level=EnforcementLevel.ADVISORY,
    ),
    ResourceValidationPolicy(
        name="bridge-host-key-pinned",
        description="Every bridge VM gets the program's SSH host key through cloud-init; every SoftEther node's SSH target pins a host key.",
        validate=_bridge_host_key_pinned,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
)


# --- offline evaluation ---------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    policy: str
    urn: str
    message: str


def policy_config(stack: Stack) -> dict[str, Any]:
    """The policies' config for a stack: its operator CIDR, hybrid, home and App Service
    ranges, the App Service's `app.access`, and the home server's SoftEther port."""
    net = stack.network
    app = stack.app_range
    return {
        "operatorCidr": str(net.operator_cidr),
        "hybridRanges": [str(c) for c in net.ranges.values()],
        "homeRanges": [str(c) for c in net.home.cidrs],
        "appRanges": [str(app)] if app else [],
        "appAccess": stack.app.access if stack.app else "private",
        "softetherPorts": [net.home.vpn_server.port],
    }


def pack_config(stack: Stack) -> dict[str, Any]:
    """`--policy-pack-config` for the live pack: each policy that takes config gets the
    stack's."""
    from . import POLICIES as PACK  # the whole pack: paas.py's policies take config too

    config = policy_config(stack)
    return {p.name: config for p in PACK if p.config_schema is not None}


@dataclass(frozen=True)
class Resource:
    """What a policy needs of one resource; `props` in the engine's wire form."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    parent: str = ""


def is_wire_secret(value: Any) -> bool:
    """Whether `value` is a secret in the engine's wire form (`{sig: secret, "value": ...}`)."""
    return isinstance(value, Mapping) and value.get(SPECIAL_SIG_KEY) == SPECIAL_SECRET_SIG


def policy_props(value: Any) -> Any:
    """Wire-form properties as a policy sees them, with secrets kept as `Secret`."""
    if is_wire_secret(value):
        return Secret(policy_props(value.get("value")))
    if isinstance(value, Mapping):
        return {k: policy_props(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [policy_props(v) for v in value]
    return value


def evaluate(
    resources: Iterable[Resource],
    config: Mapping[str, Any],
    policies: Iterable[ResourceValidationPolicy] = POLICIES,
) -> list[Violation]:
    """Run every policy's `validate` over every resource; never builds a PolicyPack (which
    would start a gRPC server)."""
    found: list[Violation] = []
    policies = tuple(policies)
    for res in resources:
        options = PolicyResourceOptions(
            False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], res.parent or None
        )
        for policy in policies:
            args = ResourceValidationArgs(
                res.type, policy_props(res.props), res.urn, res.name, options, None, dict(config)
            )

            def report(
                message: str, urn: str | None = None, _p: str = policy.name, _r: str = res.urn
            ) -> None:
                found.append(Violation(_p, urn or _r, message))

            for validate in _validations(policy):
                validate(args, report)
            # A remediating policy (e.g. paas.py's) is violated when it would change something.
            if policy.has_remediation() and policy.remediate(args) is not None:
                report(f"{res.name}: would be remediated (properties changed by the policy)")
    return found


def _validations(policy: ResourceValidationPolicy) -> list[Callable[..., Any]]:
    v = policy.validate
    return [] if v is None else list(v) if isinstance(v, list) else [v]
