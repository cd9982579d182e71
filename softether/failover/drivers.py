"""The cloud end of a takeover: the routes to the other sites' prefixes, pointed at this bridge.

`claim()` points every moved route at this bridge (idempotent: a route already here is left
alone); `holder()` says where they point now (the ENI id, the next hop address, the `via`),
None when they disagree or one is missing. One driver per cloud, all behind that interface:
- `LabDriver`: the lab's site router namespace, `ip -n NS route replace PREFIX via VIA`;
- `AwsDriver`: EC2 `ReplaceRoute` on every route table with the instance role's credentials
  from IMDSv2, signed with SigV4 by hand (standard library only);
- `AzureDriver`: ARM `PUT .../routeTables/T/routes/R` with a managed-identity token from IMDS.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from .config import AwsDriverConfig, AzureDriverConfig, DriverConfig, LabDriverConfig
from .sigv4 import Credentials, sign

IMDS = "http://169.254.169.254"
EC2_VERSION = "2016-11-15"
ARM = "https://management.azure.com"
ARM_NETWORK_VERSION = "2023-09-01"
TIMEOUT_S = 5.0
# No proxy, ever: IMDS must be reached directly, and a bridge reaches its cloud's API
# directly (or through a VPC/private endpoint), never through whatever the environment names.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DriverError(RuntimeError):
    """A cloud call failed: the call, the status and the cloud's own message, one line."""


def run_ip(argv: Sequence[str]) -> str:
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    if res.returncode != 0:
        raise DriverError(f"{' '.join(argv)} exited {res.returncode}: {res.stderr.strip()}")
    return res.stdout


@dataclass
class LabDriver:
    """The lab's cloud route table: the site router namespace's routes."""

    cfg: LabDriverConfig
    run: Callable[[Sequence[str]], str] = run_ip

    def claim(self) -> None:
        for prefix in self.cfg.prefixes:
            self.run(["ip", "-n", self.cfg.netns, "route", "replace", str(prefix), "via", str(self.cfg.via)])

    def holder(self) -> str | None:
        routes = json.loads(self.run(["ip", "-n", self.cfg.netns, "-j", "route", "show"]) or "[]")
        gateways = {r.get("dst"): r.get("gateway") for r in routes}
        found = {gateways.get(str(p)) for p in self.cfg.prefixes}
        return found.pop() if len(found) == 1 and None not in found else None


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> dict:
        try:
            data = json.loads(self.body or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


def http(method: str, url: str, headers: dict[str, str], body: bytes | None = None) -> Response:
    """One HTTP exchange with a hard timeout; an HTTP error status is a Response too, a
    transport failure a DriverError."""
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with _OPENER.open(req, timeout=TIMEOUT_S) as res:
            return Response(res.status, res.read())
    except urllib.error.HTTPError as exc:
        return Response(exc.code, exc.read())
    except (urllib.error.URLError, OSError) as exc:
        raise DriverError(f"{method} {url.split('?')[0]}: {getattr(exc, 'reason', exc)}") from None


Http = Callable[[str, str, dict[str, str], bytes | None], Response]


@dataclass
class ImdsCredentials:
    """The instance role's credentials from IMDSv2 (a session token first, then the role's
    name, then its keys), kept until five minutes before they expire."""

    endpoint: str = IMDS
    send: Http = http
    cached: tuple[Credentials, float] | None = None

    def _get(self, path: str, token: str) -> str:
        res = self.send("GET", f"{self.endpoint}{path}", {"X-aws-ec2-metadata-token": token}, None)
        if res.status != 200:
            raise DriverError(f"IMDS GET {path}: HTTP {res.status}")
        return res.body.decode()

    def get(self) -> Credentials:
        if self.cached and self.cached[1] > time.time() + 300:
            return self.cached[0]
        res = self.send("PUT", f"{self.endpoint}/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "21600"}, None)
        if res.status != 200:
            raise DriverError(f"IMDS PUT /latest/api/token: HTTP {res.status}")
        token = res.body.decode()
        base = "/latest/meta-data/iam/security-credentials/"
        role = self._get(base, token).split()[0]
        data = json.loads(self._get(base + role, token))
        creds = Credentials(data["AccessKeyId"], data["SecretAccessKey"], data.get("Token"))
        expires = datetime.strptime(data["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        self.cached = (creds, expires.timestamp())
        return creds


@dataclass
class AwsDriver:
    """EC2's Query API (Version 2016-11-15), POSTed form-encoded and SigV4-signed."""

    cfg: AwsDriverConfig
    send: Http = http
    credentials: ImdsCredentials = field(init=False)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __post_init__(self) -> None:
        self.credentials = ImdsCredentials(self.cfg.imds_endpoint or IMDS, self.send)

    @property
    def url(self) -> str:
        return f"{self.cfg.endpoint or f'https://ec2.{self.cfg.region}.amazonaws.com'}/"

    def request(self, action: str, params: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
        """The signed request for one action: (url, headers, body)."""
        body = urlencode({"Action": action, "Version": EC2_VERSION, **params}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        signed = sign("POST", self.url, headers, body, self.credentials.get(), self.cfg.region, "ec2", self.clock())
        return self.url, signed, body

    def call(self, action: str, params: dict[str, str]) -> ET.Element:
        url, headers, body = self.request(action, params)
        res = self.send("POST", url, headers, body)
        try:
            root = ET.fromstring(res.body)
        except ET.ParseError:
            raise DriverError(f"{action}: HTTP {res.status}, not XML: {res.body[:200]!r}") from None
        if res.status != 200:
            code = root.findtext(".//{*}Code") or "?"
            raise DriverError(f"{action} {' '.join(params.values())}: HTTP {res.status} {code}: {root.findtext('.//{*}Message') or ''}")
        return root

    def routes(self) -> dict[tuple[str, str], str | None]:
        """(route table, prefix) -> the ENI its route points at, for the moved prefixes ("" for
        a route to something else, None for no route)."""
        params = {f"RouteTableId.{i}": t for i, t in enumerate(self.cfg.route_table_ids, 1)}
        root = self.call("DescribeRouteTables", params)
        found: dict[tuple[str, str], str | None] = {}
        # Any namespace: EC2's is ".../doc/2016-11-15/", moto's drops the final slash.
        for table in root.iterfind("{*}routeTableSet/{*}item"):
            tid = table.findtext("{*}routeTableId", "")
            for route in table.iterfind("{*}routeSet/{*}item"):
                prefix = route.findtext("{*}destinationCidrBlock", "")
                found[(tid, prefix)] = route.findtext("{*}networkInterfaceId") or ""
        return {(t, str(p)): found.get((t, str(p))) for t in self.cfg.route_table_ids for p in self.cfg.prefixes}

    def claim(self) -> None:
        for (table, prefix), eni in self.routes().items():
            if eni == self.cfg.network_interface_id:
                continue
            params = {"RouteTableId": table, "DestinationCidrBlock": prefix, "NetworkInterfaceId": self.cfg.network_interface_id}
            # No route yet (left to the controller, or deleted by hand): create it here.
            self.call("ReplaceRoute" if eni is not None else "CreateRoute", params)

    def holder(self) -> str | None:
        found = set(self.routes().values())
        return found.pop() if len(found) == 1 and not {None, ""} & found else None


@dataclass
class AzureDriver:
    """ARM's REST API: each route read (`GET`, for its addressPrefix) and, when its next hop
    is not this bridge, written whole (`PUT`) with nextHopType VirtualAppliance and this
    bridge's address. The token is the VM's managed identity's, from IMDS."""

    cfg: AzureDriverConfig
    send: Http = http
    cached: tuple[str, float] | None = None

    def token(self) -> str:
        if self.cached and self.cached[1] > time.time() + 300:
            return self.cached[0]
        query = urlencode({"api-version": "2018-02-01", "resource": f"{ARM}/"})
        res = self.send("GET", f"{self.cfg.imds_endpoint or IMDS}/metadata/identity/oauth2/token?{query}", {"Metadata": "true"}, None)
        data = res.json()
        if res.status != 200 or "access_token" not in data:
            raise DriverError(f"IMDS managed identity token: HTTP {res.status} {data.get('error', '')}: {data.get('error_description', '')}")
        self.cached = (data["access_token"], float(data.get("expires_on", time.time() + 3600)))
        return self.cached[0]

    def url(self, route: str) -> str:
        c = self.cfg
        path = (
            f"/subscriptions/{c.subscription_id}/resourceGroups/{quote(c.resource_group)}"
            f"/providers/Microsoft.Network/routeTables/{quote(c.route_table)}/routes/{quote(route)}"
        )
        return f"{c.endpoint or ARM}{path}?api-version={ARM_NETWORK_VERSION}"

    def _call(self, method: str, route: str, body: dict | None = None) -> dict:
        headers = {"Authorization": f"Bearer {self.token()}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        res = self.send(method, self.url(route), headers, data)
        if res.status not in (200, 201):
            err = res.json().get("error", {})
            raise DriverError(f"{method} route {route}: HTTP {res.status} {err.get('code', '')}: {err.get('message', '')}")
        return res.json()

    def routes(self) -> dict[str, dict]:
        return {r: self._call("GET", r).get("properties", {}) for r in self.cfg.routes}

    def claim(self) -> None:
        mine = str(self.cfg.next_hop_ip)
        for route, props in self.routes().items():
            if props.get("nextHopType") == "VirtualAppliance" and props.get("nextHopIpAddress") == mine:
                continue
            if "addressPrefix" not in props:
                raise DriverError(f"GET route {route}: no properties.addressPrefix in the answer")
            body = {"properties": {"addressPrefix": props["addressPrefix"], "nextHopType": "VirtualAppliance", "nextHopIpAddress": mine}}
            self._call("PUT", route, body)

    def holder(self) -> str | None:
        found = {p.get("nextHopIpAddress") for p in self.routes().values()}
        return found.pop() if len(found) == 1 and None not in found else None


def make(cfg: DriverConfig) -> LabDriver | AwsDriver | AzureDriver:
    """The driver for a configuration."""
    if isinstance(cfg, AwsDriverConfig):
        return AwsDriver(cfg)
    if isinstance(cfg, AzureDriverConfig):
        return AzureDriver(cfg)
    return LabDriver(cfg)
