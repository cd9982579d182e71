"""The controller's configuration: `/etc/hybrid-cloud/failover.json`, validated.

`load(path)` / `parse(data)` return a frozen `Config` or raise `ConfigError` with one line
naming the field path and the bad value (`driver.route_table_ids[0]: 'rt-1' is not an AWS
route table id (rtb-...)`), before the controller touches anything. Standard library only.

Beside the interface's fields, every driver takes `endpoint` (the cloud API's base URL; None:
the cloud's own) and the cloud drivers `imds_endpoint` (the instance metadata service's base
URL; None: 169.254.169.254), so that tests talk to stand-ins on loopback only.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

NAMES = ("a", "b")
STATE_FILE = "/run/hybrid-failover/state.json"  # read by `hybrid status` over SSH too
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# Linux interface names: at most 15 bytes, no '/', no whitespace.
IFNAME = re.compile(r"^[^/\s]{1,15}$")
AWS_ID = {"rtb": re.compile(r"^rtb-[0-9a-f]{8,17}$"), "eni": re.compile(r"^eni-[0-9a-f]{8,17}$")}
AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
# ARM resource names: route tables and routes 1-80 characters of word characters, '.', '-'.
ARM_NAME = re.compile(r"^[\w][\w.-]{0,79}$")
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


class ConfigError(ValueError):
    """One line: the field path, the bad value, what is wrong with it."""


@dataclass(frozen=True)
class AwsDriverConfig:
    region: str
    route_table_ids: tuple[str, ...]
    prefixes: tuple[IPv4Network, ...]
    network_interface_id: str
    endpoint: str | None = None
    imds_endpoint: str | None = None
    kind: str = "aws"


@dataclass(frozen=True)
class AzureDriverConfig:
    subscription_id: str
    resource_group: str
    route_table: str
    routes: tuple[str, ...]
    next_hop_ip: IPv4Address
    endpoint: str | None = None
    imds_endpoint: str | None = None
    kind: str = "azure"


@dataclass(frozen=True)
class LabDriverConfig:
    netns: str
    prefixes: tuple[IPv4Network, ...]
    via: IPv4Address
    kind: str = "lab"


DriverConfig = AwsDriverConfig | AzureDriverConfig | LabDriverConfig


@dataclass(frozen=True)
class Config:
    site: str
    me: str
    peer: str
    tap: str
    own_address: IPv4Interface
    peer_address: IPv4Address
    vip: IPv4Interface
    vip_mac: str
    probes: tuple[IPv4Address, ...]
    interval_s: float
    fail_after: int
    recover_after: int
    preferred: str | None
    driver: DriverConfig
    state_file: Path = Path(STATE_FILE)
    heartbeat_port: int = 4799


def _bad(field: str, value: Any, problem: str) -> ConfigError:
    return ConfigError(f"{field}: {value!r} {problem}")


class _Fields:
    """Typed reads of one JSON object's fields, each error naming `prefix.field`."""

    def __init__(self, data: Any, prefix: str, known: set[str]) -> None:
        where = prefix.rstrip(".") or "config"
        if not isinstance(data, dict):
            raise _bad(where, data, "is not a JSON object")
        unknown = sorted(set(data) - known)
        if unknown:
            raise _bad(f"{prefix}{unknown[0]}", data[unknown[0]], "is not a known field")
        self.data, self.prefix = data, prefix

    def raw(self, name: str, default: Any = ..., /) -> Any:
        if name not in self.data:
            if default is ...:
                raise ConfigError(f"{self.prefix}{name}: missing")
            return default
        return self.data[name]

    def text(self, name: str, pattern: re.Pattern[str] | None = None, what: str = "", /) -> str:
        value = self.raw(name)
        if not isinstance(value, str) or not value:
            raise _bad(self.prefix + name, value, "is not a non-empty string")
        if pattern is not None and not pattern.match(value):
            raise _bad(self.prefix + name, value, f"is not {what}")
        return value

    def optional_url(self, name: str) -> str | None:
        value = self.raw(name, None)
        if value is None:
            return None
        if not isinstance(value, str) or not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise _bad(self.prefix + name, value, "is not an http(s) URL or null")
        return value.rstrip("/")

    def choice(self, name: str, options: tuple[str, ...], /) -> str:
        value = self.raw(name)
        if value not in options:
            raise _bad(self.prefix + name, value, f"is not one of {', '.join(options)}")
        return value

    def whole(self, name: str, low: int, /) -> int:
        value = self.raw(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _bad(self.prefix + name, value, f"is not a whole number >= {low}")
        return value

    def seconds(self, name: str, low: float, high: float, /) -> float:
        value = self.raw(name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not low <= value <= high
        ):
            raise _bad(self.prefix + name, value, f"is not a number of seconds in [{low}, {high}]")
        return float(value)

    def items(self, name: str, /) -> list[tuple[str, Any]]:
        value = self.raw(name)
        if not isinstance(value, list) or not value:
            raise _bad(self.prefix + name, value, "is not a non-empty list")
        return [(f"{self.prefix}{name}[{i}]", v) for i, v in enumerate(value)]

    def names(self, name: str, pattern: re.Pattern[str], what: str, /) -> tuple[str, ...]:
        out = []
        for field, v in self.items(name):
            if not isinstance(v, str) or not pattern.match(v):
                raise _bad(field, v, f"is not {what}")
            if v in out:
                raise _bad(field, v, "is listed twice")
            out.append(v)
        return tuple(out)

    def networks(self, name: str, /) -> tuple[IPv4Network, ...]:
        out: list[IPv4Network] = []
        for field, v in self.items(name):
            try:
                net = IPv4Network(v) if isinstance(v, str) else None
            except ValueError:
                net = None
            if net is None:
                raise _bad(field, v, "is not an IPv4 prefix with no host bits (a.b.c.d/n)")
            if net in out:
                raise _bad(field, v, "is listed twice")
            out.append(net)
        return tuple(out)


def _address(field: str, value: Any) -> IPv4Address:
    try:
        return IPv4Address(value) if isinstance(value, str) else IPv4Address("x")
    except ValueError:
        raise _bad(field, value, "is not an IPv4 address") from None


def _interface(field: str, value: Any) -> IPv4Interface:
    try:
        if not isinstance(value, str) or "/" not in value:
            raise ValueError
        iface = IPv4Interface(value)
    except ValueError:
        raise _bad(field, value, "is not an IPv4 address with its prefix length (a.b.c.d/n)") from None
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        raise _bad(field, value, "is not a host address of its network")
    return iface


def _driver(data: Any) -> DriverConfig:
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "aws":
        f = _Fields(data, "driver.", {"kind", "region", "route_table_ids", "prefixes", "network_interface_id", "endpoint", "imds_endpoint"})
        return AwsDriverConfig(
            region=f.text("region", AWS_REGION, "an AWS region name (e.g. ap-northeast-1)"),
            route_table_ids=f.names("route_table_ids", AWS_ID["rtb"], "an AWS route table id (rtb-...)"),
            prefixes=f.networks("prefixes"),
            network_interface_id=f.text("network_interface_id", AWS_ID["eni"], "an AWS network interface id (eni-...)"),
            endpoint=f.optional_url("endpoint"),
            imds_endpoint=f.optional_url("imds_endpoint"),
        )
    if kind == "azure":
        f = _Fields(data, "driver.", {"kind", "subscription_id", "resource_group", "route_table", "routes", "next_hop_ip", "endpoint", "imds_endpoint"})
        return AzureDriverConfig(
            subscription_id=f.text("subscription_id", GUID, "a subscription id (a GUID)"),
            resource_group=f.text("resource_group", re.compile(r"^[\w.()-]{1,90}$"), "a resource group name"),
            route_table=f.text("route_table", ARM_NAME, "a route table name"),
            routes=f.names("routes", ARM_NAME, "a route name"),
            next_hop_ip=_address("driver.next_hop_ip", f.raw("next_hop_ip")),
            endpoint=f.optional_url("endpoint"),
            imds_endpoint=f.optional_url("imds_endpoint"),
        )
    if kind == "lab":
        f = _Fields(data, "driver.", {"kind", "netns", "prefixes", "via"})
        return LabDriverConfig(
            netns=f.text("netns", re.compile(r"^[\w.-]{1,64}$"), "a network namespace name"),
            prefixes=f.networks("prefixes"),
            via=_address("driver.via", f.raw("via")),
        )
    raise _bad("driver.kind", kind, "is not one of aws, azure, lab")


TOP = {
    "site", "me", "peer", "tap", "own_address", "peer_address", "vip", "vip_mac", "probes",
    "interval_s", "fail_after", "recover_after", "preferred", "driver", "state_file", "heartbeat_port",
}


def parse(data: Any) -> Config:
    """The validated configuration of `data` (the parsed JSON); ConfigError on the first bad field."""
    f = _Fields(data, "", TOP)
    site = f.text("site")
    me = f.choice("me", NAMES)
    peer = f.choice("peer", NAMES)
    if peer == me:
        raise _bad("peer", peer, f"is this bridge's own name (me is {me!r})")
    tap = f.text("tap", IFNAME, "a network interface name (at most 15 characters)")
    own = _interface("own_address", f.raw("own_address"))
    peer_address = _address("peer_address", f.raw("peer_address"))
    if peer_address not in own.network or peer_address == own.ip:
        raise _bad("peer_address", str(peer_address), f"is not another address of own_address's network {own.network}")
    vip = _interface("vip", f.raw("vip"))
    if vip.network != own.network:
        raise _bad("vip", str(vip), f"is not in own_address's network {own.network}")
    if vip.ip in (own.ip, peer_address):
        raise _bad("vip", str(vip), "is one of the bridges' own addresses")
    vip_mac = f.text("vip_mac").lower()
    if not MAC.match(vip_mac) or int(vip_mac[:2], 16) & 1:
        raise _bad("vip_mac", f.raw("vip_mac"), "is not a unicast MAC address (02:48:43:00:00:02)")
    probes: list[IPv4Address] = []
    for field, v in f.items("probes"):
        address = _address(field, v)
        if address in own.network:
            raise _bad(field, v, f"is on the transit network {own.network} (a probe must cross the tunnel)")
        if address in probes:
            raise _bad(field, v, "is listed twice")
        probes.append(address)
    preferred = f.raw("preferred", None)
    if preferred is not None and preferred not in NAMES:
        raise _bad("preferred", preferred, "is not one of a, b or null")
    port = f.raw("heartbeat_port", 4799)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _bad("heartbeat_port", port, "is not a UDP port (1-65535)")
    state_file = f.raw("state_file", STATE_FILE)
    if not isinstance(state_file, str) or not state_file.startswith("/"):
        raise _bad("state_file", state_file, "is not an absolute path")
    return Config(
        site=site,
        me=me,
        peer=peer,
        tap=tap,
        own_address=own,
        peer_address=peer_address,
        vip=vip,
        vip_mac=vip_mac,
        probes=tuple(probes),
        interval_s=f.seconds("interval_s", 0.05, 60.0),
        fail_after=f.whole("fail_after", 1),
        recover_after=f.whole("recover_after", 1),
        preferred=preferred,
        driver=_driver(f.raw("driver")),
        state_file=Path(state_file),
        heartbeat_port=port,
    )


def load(path: str | Path) -> Config:
    """Read and validate the file; ConfigError (one line, with the file's name) if it is bad."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    try:
        return parse(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
