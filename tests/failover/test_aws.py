"""The AWS driver: SigV4 by hand equals botocore's signer; the driver's own signed requests
run against moto's EC2 in server mode on loopback, with credentials from an IMDSv2 stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest

from softether.failover.config import AwsDriverConfig, parse
from softether.failover.drivers import AwsDriver, DriverError, Response, http
from softether.failover.sigv4 import Credentials, sign

from .helpers import sample
from .stand_ins import serve

boto3 = pytest.importorskip("boto3")
botocore_auth = pytest.importorskip("botocore.auth")
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials as BotoCredentials  # noqa: E402

KEY, SECRET, TOKEN = "ASIAFAILOVERTEST0001", "failover/secret+key", "session-token=="
REGION = "ap-northeast-1"
PREFIXES = ["192.168.1.0/24", "192.168.30.0/24"]


@pytest.mark.parametrize("token", [TOKEN, None])
@pytest.mark.parametrize(
    "url",
    ["https://ec2.ap-northeast-1.amazonaws.com/", "http://127.0.0.1:8123/", "https://ec2.ap-northeast-1.amazonaws.com/?Version=2016-11-15&Action=DescribeRouteTables&RouteTableId.1=rtb-1"],
)
def test_sigv4_matches_botocore(url: str, token: str | None):
    now = datetime(2026, 12, 4, 2, 30, 15, tzinfo=UTC)
    body = b"Action=ReplaceRoute&Version=2016-11-15&RouteTableId=rtb-0123456789abcdef0&DestinationCidrBlock=192.168.1.0%2F24"
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    ours = sign("POST", url, headers, body, Credentials(KEY, SECRET, token), REGION, "ec2", now)
    req = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    with mock.patch.object(botocore_auth, "get_current_datetime", return_value=now.replace(tzinfo=None)):
        botocore_auth.SigV4Auth(BotoCredentials(KEY, SECRET, token), "ec2", REGION).add_auth(req)
    assert ours["Authorization"] == req.headers["Authorization"]
    assert ours["X-Amz-Date"] == req.headers["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == req.headers.get("X-Amz-Security-Token")


def test_sigv4_changes_with_every_input():
    now = datetime(2026, 12, 4, 2, 30, 15, tzinfo=UTC)
    base = ("POST", "https://ec2.ap-northeast-1.amazonaws.com/", {}, b"x", Credentials(KEY, SECRET), REGION, "ec2", now)
    first = sign(*base)["Authorization"]
    assert sign(*base[:3], b"y", *base[4:])["Authorization"] != first
    assert sign(*base[:4], Credentials(KEY, SECRET + "x"), *base[5:])["Authorization"] != first


def imds(role: str = "hybrid-bridge", token: str = "imds-token-1"):
    """IMDSv2: a PUT for a session token, then GETs that must carry it."""

    def handle(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if path == "/latest/api/token":
            ok = method == "PUT" and headers.get("x-aws-ec2-metadata-token-ttl-seconds") == "21600"
            return (200, token) if ok else (400, "")
        if headers.get("x-aws-ec2-metadata-token") != token or method != "GET":
            return 401, ""
        if path == "/latest/meta-data/iam/security-credentials/":
            return 200, role
        if path == f"/latest/meta-data/iam/security-credentials/{role}":
            return 200, {"Code": "Success", "AccessKeyId": KEY, "SecretAccessKey": SECRET, "Token": TOKEN, "Expiration": "2099-01-01T00:00:00Z"}
        return 404, ""

    return serve(handle)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def vpc(moto_url: str) -> dict[str, Any]:
    """A VPC with two route tables, the moved prefixes on bridge a's ENI, and two ENIs."""
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_url, aws_access_key_id=KEY, aws_secret_access_key=SECRET)
    vpc_id = ec2.create_vpc(CidrBlock="192.168.20.0/22")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock="192.168.20.0/24")["Subnet"]["SubnetId"]
    enis = [ec2.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"] for _ in "ab"]
    tables = [ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"] for _ in range(2)]
    for t in tables:
        for p in PREFIXES:
            ec2.create_route(RouteTableId=t, DestinationCidrBlock=p, NetworkInterfaceId=enis[0])
    return {"ec2": ec2, "enis": enis, "tables": tables}


def driver(moto_url: str, imds_url: str, vpc: dict[str, Any], eni: str) -> AwsDriver:
    cfg = parse(sample(driver={
        "kind": "aws", "region": REGION, "route_table_ids": vpc["tables"], "prefixes": PREFIXES,
        "network_interface_id": eni, "endpoint": moto_url, "imds_endpoint": imds_url,
    }))
    assert isinstance(cfg.driver, AwsDriverConfig)
    return AwsDriver(cfg.driver)


def targets(vpc: dict[str, Any]) -> set[tuple[str, str, str]]:
    out = set()
    for t in vpc["ec2"].describe_route_tables(RouteTableIds=vpc["tables"])["RouteTables"]:
        for r in t["Routes"]:
            if r.get("DestinationCidrBlock") in PREFIXES:
                out.add((t["RouteTableId"], r["DestinationCidrBlock"], r.get("NetworkInterfaceId")))
    return out


def test_aws_driver_claim_moves_every_route_to_this_eni(moto_url: str, vpc: dict[str, Any]):
    a, b = vpc["enis"]
    with imds() as (imds_url, imds_seen):
        sent: list[str] = []

        def recording(method: str, url: str, headers: dict[str, str], body: bytes | None) -> Response:
            if url.startswith(moto_url):
                sent.append((body or b"").decode().split("&")[0])
                assert headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY}/")
                assert headers["X-Amz-Security-Token"] == TOKEN
            return http(method, url, headers, body)

        drv = driver(moto_url, imds_url, vpc, b)
        drv.send = recording
        drv.credentials.send = recording
        assert drv.holder() == a
        drv.claim()
        assert targets(vpc) == {(t, p, b) for t in vpc["tables"] for p in PREFIXES}
        assert drv.holder() == b
        assert sent.count("Action=ReplaceRoute") == 4
        sent.clear()
        drv.claim()  # idempotent: nothing to replace
        assert sent == ["Action=DescribeRouteTables"]
        # IMDSv2 was asked once (cached credentials), every GET with the session token.
        assert [(m, p) for m, p, _, _ in imds_seen] == [
            ("PUT", "/latest/api/token"),
            ("GET", "/latest/meta-data/iam/security-credentials/"),
            ("GET", "/latest/meta-data/iam/security-credentials/hybrid-bridge"),
        ]


def test_aws_driver_holder_is_none_when_routes_disagree_and_claim_creates_missing(moto_url: str, vpc: dict[str, Any]):
    a, b = vpc["enis"]
    ec2 = vpc["ec2"]
    ec2.replace_route(RouteTableId=vpc["tables"][1], DestinationCidrBlock=PREFIXES[0], NetworkInterfaceId=b)
    ec2.delete_route(RouteTableId=vpc["tables"][1], DestinationCidrBlock=PREFIXES[1])
    with imds() as (imds_url, _):
        drv = driver(moto_url, imds_url, vpc, a)
        assert drv.holder() is None
        drv.claim()
        assert targets(vpc) == {(t, p, a) for t in vpc["tables"] for p in PREFIXES}
        assert drv.holder() == a


def test_aws_driver_error_names_the_call_and_the_cloud_code(moto_url: str, vpc: dict[str, Any]):
    with imds() as (imds_url, _):
        drv = driver(moto_url, imds_url, vpc, "eni-0123456789abcdef0")
        with pytest.raises(DriverError, match=r"^ReplaceRoute rtb-\S+ 192.168.1.0/24 eni-0123456789abcdef0: HTTP 400 \S+"):
            drv.claim()


def test_aws_driver_imds_refusal_is_one_line(moto_url: str, vpc: dict[str, Any]):
    with serve(lambda *_: (403, "")) as (imds_url, _):
        drv = driver(moto_url, imds_url, vpc, vpc["enis"][0])
        with pytest.raises(DriverError, match=r"^IMDS PUT /latest/api/token: HTTP 403$"):
            drv.claim()
