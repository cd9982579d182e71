"""Desired state of one SoftEther node: frozen pydantic models, JSON round-trip.

A `ServerSpec` describes a VPN Server (the home server), a `BridgeSpec` a VPN Bridge (one per
cloud site) together with the bridge host's OS side. Passwords are `SecretStr`: they print
and dump as `**********` unless dumped with `to_json(reveal=True)` (for a spec file that a
human or the Pulumi provider hands to `python -m softether`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    SerializationInfo,
    TypeAdapter,
    field_validator,
    model_validator,
)

# SoftEther object names: what vpncmd accepts without quoting.
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]
Device = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,15}$")]


def _dump_secret(value: SecretStr, info: SerializationInfo) -> str:
    # Secrets stay masked unless the caller asks for them (spec files, the provider).
    return value.get_secret_value() if (info.context or {}).get("reveal") else str(value)


def _vpncmd_safe(value: SecretStr) -> SecretStr:
    # vpncmd reads an argument that starts with "/" or "-" as a switch, reports success and
    # sets nothing; a space or quote would split or end the argument.
    text = value.get_secret_value()
    if not text or text[0] in "/-" or any(c.isspace() or c == '"' for c in text):
        raise ValueError("a password must be non-empty, not start with / or -, and hold no space or quote")
    return value


Secret = Annotated[SecretStr, PlainSerializer(_dump_secret, when_used="always")]
# A password that travels as a vpncmd argument.
Password = Annotated[Secret, AfterValidator(_vpncmd_safe)]


class Model(BaseModel):
    # Errors never echo input: it may be a password.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class User(Model):
    """A hub user with password authentication."""

    name: Name
    password: Password


class Cascade(Model):
    """A cascade connection from a local hub to a hub on another VPN Server."""

    name: Name
    server: str = Field(min_length=1)
    port: int = Field(default=5555, ge=1, le=65535)
    remote_hub: Name
    username: Name
    password: Password
    # TCP connections per cascade (`CascadeDetailSet /MAXTCP`); None leaves SoftEther's default.
    max_tcp: int | None = Field(default=None, ge=1, le=32)
    # The server's certificate (PEM): pinned with CascadeServerCertSet + CascadeServerCertEnable,
    # so the cascade refuses any other server. None: not verified (SoftEther's default).
    server_cert: str | None = None

    @field_validator("server_cert")
    @classmethod
    def _pem(cls, v: str | None) -> str | None:
        if v is not None:
            cert_sha1(v)
        return v

    @property
    def server_cert_sha1(self) -> str | None:
        return cert_sha1(self.server_cert) if self.server_cert else None


class Hub(Model):
    """A virtual hub. Users and cascades listed here are the complete set: others are removed."""

    name: Name
    # Hub-admin password, set at `HubCreate` only: SoftEther never shows it back.
    password: Password | None = None
    securenat: bool = False
    users: tuple[User, ...] = ()
    cascades: tuple[Cascade, ...] = ()
    # `ExtOptionSet` values, e.g. {"DisableUdpAcceleration": 1}; unlisted options are left alone.
    ext_options: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> Hub:
        _no_dupes(f"hub {self.name} users", [u.name.lower() for u in self.users])
        _no_dupes(f"hub {self.name} cascades", [c.name.lower() for c in self.cascades])
        return self


class LocalBridge(Model):
    """`BridgeCreate hub /DEVICE:device /TAP:yes|no`. A tap device appears as `tap_<device>`."""

    hub: Name
    device: Device
    tap: bool = False
    # Turn rx/tx checksum and TSO/GSO/GRO offloads off on the bridged NIC (not on a tap): with
    # them on, TCP through the tunnel falls to a fraction of a Mbit/s.
    offloads_off: bool = True


class L3Interface(Model):
    hub: Name
    address: IPv4Interface


class L3Route(Model):
    network: IPv4Network
    gateway: IPv4Address
    metric: int = Field(default=1, ge=1)


class L3Switch(Model):
    """A virtual Layer-3 switch (VPN Server only); interfaces and routes are the complete set."""

    name: Name
    interfaces: tuple[L3Interface, ...] = ()
    routes: tuple[L3Route, ...] = ()


class Hardening(Model):
    """Protocol switches of a VPN Server; everything off is the reference posture."""

    openvpn: bool = False
    sstp: bool = False
    l2tp_ipsec: bool = False
    l2tp_raw: bool = False
    etherip: bool = False
    vpn_azure: bool = False
    vpn_over_icmp: bool = False
    vpn_over_dns: bool = False


class OsRoute(Model):
    network: IPv4Network
    via: IPv4Address


class HostOsSpec(Model):
    """The bridge host's OS side: tap address, routes over it, IPv4 forwarding, persisted.

    Persistence: a oneshot systemd unit (written to `unit_dir`, enabled by the same symlinks
    `systemctl enable` makes, ordered after and bound to `service`) re-applies address and
    routes whenever the SoftEther service (re)starts, because the tap is re-created then;
    `sysctl_dir` gets the ip_forward drop-in.
    """

    device: Device  # the kernel name, e.g. tap_vpntap
    address: IPv4Interface
    # The tap's MAC, the same for every VM of the site: SoftEther gives each new tap a random
    # one, and the home L3 switch never replaces the MAC it learned for an address while ARP
    # for it keeps coming (Cedar/Layer3.c `L3InsertArpTable` only extends the entry), so a
    # rebuilt bridge VM with a new MAC would get no replies. None: SoftEther's own.
    mac: str | None = Field(default=None, pattern=r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
    routes: tuple[OsRoute, ...] = ()
    ip_forward: bool = True
    unit_dir: str = "/etc/systemd/system"
    sysctl_dir: str = "/etc/sysctl.d"
    service: str = "softether-vpnbridge.service"
    unit_name: str = "hybrid-bridge-net.service"
    # The SSH host key (`ssh-ed25519 AAAA...`) the VM got in its user data: it served the first
    # contact only (user data is readable for the VM's life: EC2 DescribeInstanceAttribute and
    # IMDS; Azure says no secrets in customData), so a VM still holding it gets a new one.
    # None: the host key is left as it is (a machine whose key is not the stack's).
    retired_host_key: str | None = None
    # Files of the bridge's own software, path -> text (a pair's failover controller package,
    # softether.derive.failover_package: too large for EC2's 16 KB of user data, and new code
    # is then a converge, not a new VM). Left out of the spec's JSON while empty: a single
    # bridge's spec (and its digest, softether.dynamic) stays what it was.
    files: tuple[tuple[str, str], ...] = Field(default=(), exclude_if=lambda files: not files)


class TrafficCheck(Model):
    """Bounded ping over the tap to the home L3 switch: proves the cascade carries traffic."""

    target: IPv4Address
    count: int = Field(default=3, ge=1, le=20)
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    attempts: int = Field(default=2, ge=1, le=5)


class _Node(Model):
    admin_password: Password
    # vpncmd always connects to localhost:<admin_port>; this listener is never removed.
    admin_port: int = Field(default=5555, ge=1, le=65535)
    # Where SoftEther keeps its configuration (vpn_server.config / vpn_bridge.config): it
    # reads adminip.txt there at every admin login (softether/hostos.py). Debian's package
    # and the upstream build with Debian's paths: /var/lib/softether; a release tarball
    # built by hand: its own directory.
    state_dir: str = Field(default="/var/lib/softether", pattern=r"^/[A-Za-z0-9_./-]*$")
    listeners: tuple[int, ...] = (5555,)
    # The vpncmd binary on the node (an upstream build installs it elsewhere).
    vpncmd: str = "vpncmd"
    hubs: tuple[Hub, ...] = ()
    local_bridges: tuple[LocalBridge, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> _Node:
        if self.admin_port not in self.listeners:
            raise ValueError(f"admin_port {self.admin_port} is not in listeners {self.listeners}")
        _no_dupes("hubs", [h.name.lower() for h in self.hubs])
        names = {h.name.lower() for h in self.hubs}
        for b in self.local_bridges:
            if b.hub.lower() not in names:
                raise ValueError(f"local bridge to {b.device}: hub {b.hub} is not in hubs")
        return self

    def hub(self, name: str) -> Hub:
        return next(h for h in self.hubs if h.name.lower() == name.lower())

    def secrets(self) -> tuple[str, ...]:
        """Every secret value of the spec (for masking output), longest first."""
        vals = [self.admin_password.get_secret_value()]
        for h in self.hubs:
            if h.password is not None:
                vals.append(h.password.get_secret_value())
            vals += [u.password.get_secret_value() for u in h.users]
            vals += [c.password.get_secret_value() for c in h.cascades]
        return tuple(sorted({v for v in vals if v}, key=len, reverse=True))

    def to_json(self, *, reveal: bool = False) -> str:
        return self.model_dump_json(context={"reveal": reveal}, indent=2)


class ServerSpec(_Node):
    """A SoftEther VPN Server node."""

    kind: Literal["server"] = "server"
    hardening: Hardening = Hardening()
    l3_switches: tuple[L3Switch, ...] = ()
    # True: hubs and L3 switches not listed are deleted (a fresh server's DEFAULT too, unless
    # listed). Off by default: a home server is the user's, and its other hubs and L3 switches
    # are not the stack's to delete.
    prune_hubs: bool = False
    # The server's certificate: 0 leaves it as it is (the user's server keeps its own); N > 0:
    # a self-signed one the server generated for rotation N (`ServerCertRegenerate` with the
    # common name `certificate_name`), made anew whenever N changes. SoftEther swaps it without
    # disconnecting anyone; the bridges' pins follow it (components/node.py).
    certificate_rotation: int = Field(default=0, ge=0)

    @property
    def certificate_name(self) -> str | None:
        """The common name of the certificate the spec wants (None: the server's own)."""
        n = self.certificate_rotation
        return f"hybrid-cloud-rotation-{n}" if n else None

    @model_validator(mode="after")
    def _l3(self) -> ServerSpec:
        names = {h.name.lower() for h in self.hubs}
        _no_dupes("l3_switches", [s.name.lower() for s in self.l3_switches])
        for s in self.l3_switches:
            for i in s.interfaces:
                if i.hub.lower() not in names:
                    raise ValueError(f"l3 switch {s.name}: hub {i.hub} is not in hubs")
        return self


BRIDGE_HUB = "BRIDGE"
DEFAULT_RESTART = "systemctl restart softether-vpnbridge"


class BridgeSpec(_Node):
    """A SoftEther VPN Bridge node: its single hub BRIDGE, a tap bridge, a cascade home.

    `restart_command` restarts the bridge process (`systemctl restart softether-vpnbridge` on
    a VM; the lab supplies its own): used when a new or changed cascade carries no traffic.
    """

    kind: Literal["bridge"] = "bridge"
    host_os: HostOsSpec | None = None
    restart_command: str = DEFAULT_RESTART
    traffic_check: TrafficCheck | None = None

    @model_validator(mode="after")
    def _bridge_hub(self) -> BridgeSpec:
        # A VPN Bridge has exactly one hub and cannot create others (HubCreate -> 33).
        if [h.name for h in self.hubs] != [BRIDGE_HUB]:
            raise ValueError(f"a VPN Bridge has exactly one hub, {BRIDGE_HUB}")
        return self

    @property
    def cascades(self) -> tuple[Cascade, ...]:
        return self.hub(BRIDGE_HUB).cascades


NodeSpec = Annotated[ServerSpec | BridgeSpec, Field(discriminator="kind")]
_NODE: TypeAdapter[ServerSpec | BridgeSpec] = TypeAdapter(NodeSpec)


def spec_from_json(text: str | bytes) -> ServerSpec | BridgeSpec:
    """Parse a spec written by `to_json(reveal=True)`."""
    return _NODE.validate_json(text)


def spec_from_dict(data: dict[str, Any]) -> ServerSpec | BridgeSpec:
    return _NODE.validate_python(data)


def spec_to_dict(spec: ServerSpec | BridgeSpec, *, reveal: bool = False) -> dict[str, Any]:
    return json.loads(spec.to_json(reveal=reveal))


class SshTarget(Model):
    """How to reach a node: key auth and a pinned host key (`ssh-ed25519 AAAA...`)."""

    host: str = Field(min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
    user: str = "root"
    host_key: str = Field(min_length=1)
    private_key: Secret  # OpenSSH/PEM text
    connect_deadline_s: float = Field(default=120.0, gt=0)
    # How long a port that refuses connections is retried: sshd may be seconds from starting
    # on a running machine; on a new VM it stays closed for the whole first boot.
    refused_deadline_s: float = Field(default=10.0, gt=0)


def cert_sha1(pem: str) -> str:
    """SHA-1 of a PEM certificate's DER bytes, upper-case hex (as vpncmd's CascadeGet shows)."""
    m = re.search(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", pem, re.S)
    if not m:
        raise ValueError("not a PEM certificate")
    der = base64.b64decode("".join(m.group(1).split()))
    return hashlib.sha1(der).hexdigest().upper()


def _no_dupes(what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"{what}: {n} appears twice")
        seen.add(n)
