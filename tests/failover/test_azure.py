"""The Azure driver against a loopback ARM stand-in that checks each request's shape against
the published REST API: Routes - Get / Create Or Update (api-version 2023-09-01) and the IMDS
managed-identity token (api-version 2018-02-01, `Metadata: true`)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from softether.failover.config import AzureDriverConfig, parse
from softether.failover.drivers import AzureDriver, DriverError

from .helpers import sample
from .stand_ins import serve

SUB = "00000000-0000-0000-0000-0000000000aa"
ROUTE = re.compile(
    rf"^/subscriptions/{SUB}/resourceGroups/hybrid-rg/providers/Microsoft\.Network/routeTables/hybrid-rt/routes/(?P<name>[\w.-]+)$"
)
TOKEN = "eyJ0eXAi.managed-identity"


class Arm:
    """The routes of one route table, and every shape error seen (the test asserts none)."""

    def __init__(self, routes: dict[str, tuple[str, str]]) -> None:
        self.routes = routes  # name -> (addressPrefix, nextHopIpAddress)
        self.errors: list[str] = []

    def imds(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        url = urlsplit(path)
        q = parse_qs(url.query)
        if (method, url.path) != ("GET", "/metadata/identity/oauth2/token") or headers.get("metadata") != "true":
            self.errors.append(f"IMDS {method} {path} {headers}")
            return 400, {"error": "invalid_request", "error_description": "Required metadata header not specified"}
        if q != {"api-version": ["2018-02-01"], "resource": ["https://management.azure.com/"]}:
            self.errors.append(f"IMDS query {q}")
            return 400, {"error": "invalid_request", "error_description": "bad query"}
        return 200, {"access_token": TOKEN, "expires_on": "4070908800", "resource": "https://management.azure.com/", "token_type": "Bearer"}

    def arm(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        url = urlsplit(path)
        m = ROUTE.match(url.path)
        if m is None or parse_qs(url.query) != {"api-version": ["2023-09-01"]}:
            self.errors.append(f"path {path}")
            return 404, {"error": {"code": "InvalidResourceType", "message": path}}
        if headers.get("authorization") != f"Bearer {TOKEN}":
            self.errors.append(f"auth {headers.get('authorization')}")
            return 401, {"error": {"code": "AuthenticationFailed", "message": "no token"}}
        name = m["name"]
        if name not in self.routes:
            return 404, {"error": {"code": "NotFound", "message": f"Resource {name} not found"}}
        if method == "PUT":
            if headers.get("content-type") != "application/json":
                self.errors.append(f"content-type {headers.get('content-type')}")
            doc = json.loads(body)
            props = doc.get("properties", {})
            if set(doc) != {"properties"} or set(props) != {"addressPrefix", "nextHopType", "nextHopIpAddress"} or props["nextHopType"] != "VirtualAppliance":
                self.errors.append(f"body {doc}")
                return 400, {"error": {"code": "InvalidRequestFormat", "message": "bad body"}}
            self.routes[name] = (props["addressPrefix"], props["nextHopIpAddress"])
        elif method != "GET":
            self.errors.append(f"method {method}")
        prefix, hop = self.routes[name]
        return 200, {
            "id": url.path, "name": name, "type": "Microsoft.Network/routeTables/routes",
            "properties": {"provisioningState": "Succeeded", "addressPrefix": prefix, "nextHopType": "VirtualAppliance", "nextHopIpAddress": hop},
        }


def driver(arm_url: str, imds_url: str, routes: list[str], hop: str = "192.168.30.101") -> AzureDriver:
    cfg = parse(sample(driver={
        "kind": "azure", "subscription_id": SUB, "resource_group": "hybrid-rg", "route_table": "hybrid-rt",
        "routes": routes, "next_hop_ip": hop, "endpoint": arm_url, "imds_endpoint": imds_url,
    }))
    assert isinstance(cfg.driver, AzureDriverConfig)
    return AzureDriver(cfg.driver)


def test_azure_driver_claim_puts_every_route_with_the_published_shape():
    arm = Arm({"to-home-0": ("192.168.1.0/24", "192.168.30.100"), "to-vpc-0": ("192.168.20.0/24", "192.168.30.100")})
    with serve(arm.imds) as (imds_url, _), serve(arm.arm) as (arm_url, seen):
        drv = driver(arm_url, imds_url, ["to-home-0", "to-vpc-0"])
        assert drv.holder() == "192.168.30.100"
        drv.claim()
        assert arm.routes == {"to-home-0": ("192.168.1.0/24", "192.168.30.101"), "to-vpc-0": ("192.168.20.0/24", "192.168.30.101")}
        assert drv.holder() == "192.168.30.101"
        puts = [p for m, p, _, _ in seen if m == "PUT"]
        assert len(puts) == 2
        seen.clear()
        drv.claim()  # idempotent: reads only
        assert {m for m, _, _, _ in seen} == {"GET"}
    assert arm.errors == []


def test_azure_driver_holder_none_when_routes_disagree():
    arm = Arm({"r1": ("192.168.1.0/24", "192.168.30.100"), "r2": ("192.168.20.0/24", "192.168.30.101")})
    with serve(arm.imds) as (imds_url, _), serve(arm.arm) as (arm_url, _):
        assert driver(arm_url, imds_url, ["r1", "r2"]).holder() is None
    assert arm.errors == []


def test_azure_driver_errors_are_one_line():
    arm = Arm({})
    missing = pytest.raises(DriverError, match=r"^GET route missing: HTTP 404 NotFound: Resource missing not found$")
    with serve(arm.imds) as (imds_url, _), serve(arm.arm) as (arm_url, _), missing:
        driver(arm_url, imds_url, ["missing"]).claim()
    refused = serve(lambda *_: (400, {"error": "invalid_request", "error_description": "Identity not found"}))
    no_identity = pytest.raises(DriverError, match=r"^IMDS managed identity token: HTTP 400 invalid_request: Identity not found$")
    with refused as (imds_url, _), no_identity:
        driver("http://127.0.0.1:9", imds_url, ["r1"]).claim()
