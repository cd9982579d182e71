"""The stack's description: frozen pydantic models, one per config key of the stack file.

Field names are snake_case in Python and camelCase in the stack file (Pulumi's convention);
error messages use the stack file's spelling, so a user can find the line to fix.
Cross-field rules (overlaps, reserved addresses, references) live in `validate.py`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .clouds import Cloud, rules

# SoftEther names hubs, users and cascades with these characters; keep site names inside the
# same alphabet so they can double as SoftEther user names and Pulumi resource names.
Name = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")]

# The tap device SoftEther creates for a local bridge with /TAP:yes gets this prefix.
TAP_PREFIX = "tap_"
TAP_NAME = "vpntap"
# The bridge VM's own filter (components/firewall.py `bridge_ruleset`): the file cloud-init
# writes it to and Debian's nftables.service loads.
RULESET_FILE = "/etc/nftables.conf"


class Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


class Transit(Model):
    """The virtual hub every VPN node joins at layer 2, and its address range."""

    cidr: IPv4Network
    hub: Name = "HYBRID"


class Ssh(Model):
    host: str = Field(min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
    user: Name = "root"


class VpnServer(Model):
    """The home SoftEther VPN Server: its virtual L3 switch joins the LAN and the transit hub."""

    lan_address: IPv4Address
    transit_address: IPv4Address
    host_address: IPv4Address | None = None
    lan_hub: Name = "DEFAULT"
    lan_hub_users: tuple[Name, ...] = ()
    bridge_device: str = Field(default="eth1", pattern=r"^[A-Za-z0-9_.-]{1,15}$")
    public_host: str = Field(min_length=1)
    port: int = Field(default=5555, ge=1, le=65535)
    ssh: Ssh
    l3_switch: Name = "L3SW"
    # Where the server keeps vpn_server.config (its adminip.txt goes there): Debian's
    # package, /var/lib/softether; a release tarball built by hand, its directory, e.g.
    # /usr/local/vpnserver.
    state_dir: str = Field(default="/var/lib/softether", pattern=r"^/[A-Za-z0-9_./-]*$")


class HomeSite(Model):
    name: Name = "home"
    cidrs: tuple[IPv4Network, ...] = Field(min_length=1)
    # Only needed when the home site has more than one range: the L3 switch reaches the
    # ranges it has no interface in through this router.
    gateway: IPv4Address | None = None
    vpn_server: VpnServer


class Subnet(Model):
    name: Name
    cidr: IPv4Network
    zone: str | None = None


class BridgePair(Model):
    """The second bridge VM of a site (`b`) and both bridges' own transit addresses.

    With a pair, the bridge's `transitAddress` is the site's virtual address: the home L3
    switch's next hop, held by whichever bridge is active (the failover controller moves it
    with its MAC); `transitAddresses` are the taps' own, always up, one per bridge (a, b).
    """

    subnet: Name
    private_address: IPv4Address
    transit_addresses: tuple[IPv4Address, IPv4Address]
    # Azure: the availability zones of the two VMs (a, b), where the region has zones; AWS
    # takes each bridge's zone from its subnet's.
    zones: tuple[str, str] | None = None


class Bridge(Model):
    """A SoftEther VPN Bridge VM: fixed private address in `subnet`, tap address on the transit hub."""

    subnet: Name
    private_address: IPv4Address
    transit_address: IPv4Address
    size: str | None = None
    cascade_user: Name | None = None
    pair: BridgePair | None = None


# The second bridge of a pair is its own SoftEther node: `<site>-b`, cascade user `<user>-b`.
PAIR_SUFFIX = "-b"


@dataclass(frozen=True)
class BridgeVm:
    """One bridge VM of a site, a SoftEther node of its own: `node` names it everywhere a
    node is keyed (specs, secrets, host keys, the lab); the first (or only) bridge of a site
    is named after the site. `transit_address` is its tap's own address; `role` is its name
    in a pair ("a" | "b"), None for a site's only bridge."""

    node: str
    site: str
    role: Literal["a", "b"] | None
    subnet: str
    private_address: IPv4Address
    transit_address: IPv4Address
    cascade_user: str


class CloudSite(Model):
    name: Name
    cloud: Cloud
    region: str | None = None
    cidrs: tuple[IPv4Network, ...] = Field(min_length=1)
    subnets: tuple[Subnet, ...] = Field(min_length=1)
    bridge: Bridge

    @property
    def bridge_size(self) -> str:
        return self.bridge.size or rules(self.cloud).default_bridge_size

    @property
    def cpu_credits(self) -> str | None:
        """The bridge's CPU credit mode (`CloudRules.cpu_credits`: why), or None."""
        return rules(self.cloud).credits_of(self.bridge_size)

    @property
    def cascade_user(self) -> str:
        return self.bridge.cascade_user or self.name.lower()

    def subnet(self, name: str) -> Subnet:
        return next(s for s in self.subnets if s.name == name)

    @property
    def bridge_vms(self) -> tuple[BridgeVm, ...]:
        """The site's bridge VMs: one, or a pair (a, b) when `bridge.pair` is set."""
        b, pair = self.bridge, self.bridge.pair
        if pair is None:
            return (
                BridgeVm(self.name, self.name, None, b.subnet, b.private_address, b.transit_address, self.cascade_user),
            )
        return (
            BridgeVm(self.name, self.name, "a", b.subnet, b.private_address, pair.transit_addresses[0], self.cascade_user),
            BridgeVm(
                self.name + PAIR_SUFFIX,
                self.name,
                "b",
                pair.subnet,
                pair.private_address,
                pair.transit_addresses[1],
                self.cascade_user + PAIR_SUFFIX,
            ),
        )


class SoftEtherOptions(Model):
    """Where the cloud bridges get SoftEther from, and the tunnel's performance settings."""

    # Debian 12's 5.01 has published CVEs and an OpenSSL 3 defect that stalls cascades;
    # upstream fixed both in 5.02.5185. The commit is pinned, not only the tag name.
    source: Literal["upstream", "debian"] = "upstream"
    upstream_tag: str = "5.2.5188"
    upstream_commit: str = Field(
        default="10d6efcc5e3329e5a959a99c6e939648f41121bf", pattern=r"^[0-9a-f]{40}$"
    )
    # Measured side by side in bench/lab_throughput.py: with UDP acceleration off on the hubs,
    # TCP through the tunnel carries about twice what the stock settings carry. One TCP
    # connection per cascade instead of SoftEther's 8 was within the noise there (about +8 %
    # in an earlier measurement on an idle machine), and so were 2 and 4 in
    # bench/tunnel_settings.py (1 and 2 both run 2 TCP connections, CascadeStatusGet); raise it
    # for long, lossy internet paths.
    udp_acceleration: bool = False
    max_connections: int = Field(default=1, ge=1, le=32)


class AllowedPath(Model):
    """Connections the bridges let `source` open to `destination`, beyond the defaults
    (components/firewall.py: home <-> every cloud site, the database's `allowedFrom` and the
    App Service subnet to the database port). Each end names a site (`home`, `Hybrid-VPC`:
    every subnet of it but the App Service's) or one subnet (`Hybrid-VNet/Hybrid_Subnet_Dammy`).
    Replies always pass; the other direction needs its own path."""

    source: str = Field(alias="from", min_length=1)
    destination: str = Field(alias="to", min_length=1)
    # TCP ports; unset: every protocol and port.
    ports: tuple[Annotated[int, Field(ge=1, le=65535)], ...] | None = Field(default=None, min_length=1)


class Topology(Model):
    operator_cidr: IPv4Network
    transit: Transit
    home: HomeSite
    sites: tuple[CloudSite, ...] = Field(min_length=1)
    softether: SoftEtherOptions = SoftEtherOptions()
    paths: tuple[AllowedPath, ...] = ()

    def site(self, name: str) -> CloudSite:
        return next(s for s in self.sites if s.name == name)

    @property
    def bridge_vms(self) -> tuple[BridgeVm, ...]:
        """Every bridge VM of every site, in site order."""
        return tuple(vm for s in self.sites for vm in s.bridge_vms)

    @property
    def ranges(self) -> dict[str, IPv4Network]:
        """Every range of the hybrid network by its field path: home, transit, each site's."""
        out = {f"network.home.cidrs[{i}]": c for i, c in enumerate(self.home.cidrs)}
        out["network.transit.cidr"] = self.transit.cidr
        for i, site in enumerate(self.sites):
            out |= {f"network.sites[{i}].cidrs[{j}]": c for j, c in enumerate(site.cidrs)}
        return out


class Database(Model):
    """Amazon RDS for MySQL, private, in one AWS site (part 2 of the blog)."""

    site: Name
    engine_version: str = "8.4"
    instance_class: str = "db.t4g.micro"
    allocated_storage: int = Field(default=20, ge=20, le=65536)
    db_name: Name = "wordpress"
    username: Name = "wpadmin"
    port: int = Field(default=3306, ge=1, le=65535)
    multi_az: bool = False
    skip_final_snapshot: bool = True
    allowed_from: tuple[Name, ...] = Field(min_length=1)


class App(Model):
    """WordPress on Azure App Service with Regional VNet Integration into `subnet`.

    `access: private` (the default): the site has no public door; an App Service private
    endpoint in `endpointSubnet` (default: the site's first subnet other than `subnet`) at
    `endpointAddress` (default: that subnet's last address Azure leaves to hosts) is how the
    other sites reach it, over the tunnels. `public`: the site keeps its public address, open
    to `operatorCidr` only. Either way WordPress is installed at deploy time, its admin
    `adminUser` with a generated password (components/app.py)."""

    site: Name
    subnet: Name
    sku: str = "B1"
    image: str = "wordpress:6.8.3-php8.3-apache"
    access: Literal["private", "public"] = "private"
    endpoint_subnet: Name | None = None
    endpoint_address: IPv4Address | None = None
    title: str = Field(default="hybrid-cloud", min_length=1, max_length=100)
    admin_user: Name = "hybrid-admin"
    # Where WordPress mails its admin (password resets); unset: the first of budgets.emails,
    # else an address of the reserved .invalid domain (RFC 2606), which mails nobody.
    admin_email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = None


class AwsBudget(Model):
    name: Name
    amount_usd: float = Field(gt=0)
    thresholds: tuple[float, ...] = Field(min_length=1)


class AzureBudget(Model):
    name: Name
    amount: float = Field(gt=0)
    thresholds: tuple[float, ...] = Field(min_length=1)


class AzureBudgets(Model):
    scope: Literal["subscription", "resourceGroup"] = "subscription"
    # Azure budgets count in the billing account's currency, which the API does not take: the
    # stack states it (ISO 4217) so the amounts can be checked against the estimate.
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    # Unset: the first day of the month of the first `pulumi up`.
    start_date: datetime.date | None = None
    budgets: tuple[AzureBudget, ...] = Field(min_length=1)


class Budgets(Model):
    enabled: bool = True
    emails: tuple[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")], ...] = ()
    aws: tuple[AwsBudget, ...] = ()
    azure: AzureBudgets | None = None


# A credential kind's rotation counter: how often it has been rotated (README "Rotate").
# A digit string counts (`pulumi config set --path` may store one); true/false does not.
RotationCounter = Annotated[int, BeforeValidator(lambda v: _not_bool(v)), Field(ge=0)]


def _not_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("a counter (0, 1, 2, ...), not true or false")
    return value



class Rotation(Model):
    """`hybrid-cloud:rotation`: one counter per kind of credential the stack generates; a new
    value makes the stack generate that kind anew and `pulumi up` rotate it on the nodes.

    `cascade`: the cascade logins (a site's user on the transit hub and its bridge's cascade);
    `admin`: the cloud bridges' admin passwords (the home server's is the stack secret
    `homeAdminPassword`: set a new one to rotate it); `hub`: the hub-admin passwords and the
    home LAN hub's users; `certificate`: the home server's certificate (0: the server keeps
    its own; N: one the stack had it generate for rotation N, pinned by every bridge).
    """

    cascade: RotationCounter = 0
    admin: RotationCounter = 0
    hub: RotationCounter = 0
    certificate: RotationCounter = 0


# Hours after the last `pulumi up` until the destroy workflow removes the stack
# (`hybrid ttl` reads it on its own, without the rest of the stack).
TtlHours = Annotated[float, Field(gt=0)]


class Stack(Model):
    """Everything under the `hybrid-cloud:` namespace of a stack file."""

    network: Topology
    database: Database | None = None
    app: App | None = None
    budgets: Budgets | None = None
    ttl_hours: TtlHours | None = None
    rotation: Rotation = Rotation()
    # The home VPN server's SSH host key as `ssh-keyscan` prints it (without the host name);
    # until it is pinned the program does not connect to the home server.
    home_host_key: str | None = Field(
        default=None, pattern=r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+=*$"
    )

    @property
    def app_range(self) -> IPv4Network | None:
        """The App Service's integration subnet (None without an app)."""
        if self.app is None:
            return None
        return self.network.site(self.app.site).subnet(self.app.subnet).cidr

    @property
    def app_endpoint(self) -> AppEndpoint | None:
        """The App Service private endpoint's subnet and address (None without an app, or
        with `access: public`); its defaults resolved (topology/validate_paas.py checks them)."""
        app = self.app
        if app is None or app.access != "private":
            return None
        site = self.network.site(app.site)
        name = app.endpoint_subnet or next((s.name for s in site.subnets if s.name != app.subnet), None)
        if name is None:
            return None
        subnet = site.subnet(name)
        address = app.endpoint_address
        if address is None:
            # The last address Azure leaves to hosts (it reserves the broadcast address) that
            # no bridge of the site holds.
            bridges = {vm.private_address for vm in site.bridge_vms}
            address = subnet.cidr.broadcast_address - 1
            while address in bridges:
                address -= 1
        return AppEndpoint(site.name, subnet.name, subnet.cidr, address)

    @property
    def app_admin_email(self) -> str:
        """Where WordPress mails its admin (`app.adminEmail`, see App)."""
        if self.app is not None and self.app.admin_email:
            return self.app.admin_email
        emails = self.budgets.emails if self.budgets is not None else ()
        return emails[0] if emails else "wordpress-admin@example.invalid"


@dataclass(frozen=True)
class AppEndpoint:
    """Where the App Service private endpoint sits: its site, subnet (name, range) and address."""

    site: str
    subnet: str
    cidr: IPv4Network
    address: IPv4Address


def host_problem(address: IPv4Address, cidr: IPv4Network, low: int = 1) -> str | None:
    """Why `address` cannot be a host in `cidr` (None if it can); `low`: how many addresses
    at the start of the range the cloud reserves (the broadcast address is always reserved)."""
    if address not in cidr:
        return f"is outside {cidr}"
    offset = int(address) - int(cidr.network_address)
    if offset < low or address == cidr.broadcast_address:
        return f"is a reserved address of {cidr}"
    return None


def interface(address: IPv4Address, network: IPv4Network) -> IPv4Interface:
    return IPv4Interface(f"{address}/{network.prefixlen}")
