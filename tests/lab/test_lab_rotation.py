"""Rotation in the booted reference lab (real SoftEther, the cloud's upstream build), as
`pulumi up` carries it out after a bump of `hybrid-cloud:rotation` (lab/rotate.py, the
provider's Session): each kind's old credentials are refused afterwards and the new ones
work, every site still reaches the others; and `hybrid status` says when a cascade would
fail at its next reconnect because the home server's user no longer has its password."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from lab.lab import Lab, open_lab, specs, transport
from lab.outputs import lab_report
from lab.rotate import rotate
from lab.status import wait_for_matrix
from softether import vpncmd as v
from softether.derive import admin_secret, hub_secret, secret_names, user_secret
from softether.health import NodeReport
from softether.session import Session, certificate_name
from tests.lifecycle.test_rotation import admin_accepted, cascade_login

from .conftest import RunningLab, lab_fixture

pytestmark = pytest.mark.lab
SITE = "Hybrid-VPC"
CASCADE_USER = user_secret("HYBRID", "hybrid-vpc")


@pytest.fixture(scope="module")
def dev() -> Iterator[RunningLab]:
    yield from lab_fixture("dev")


def lab_of(dev: RunningLab) -> Lab:
    return open_lab(dev.ref, dev.root)


def secrets(lab: Lab) -> dict[str, str]:
    return lab.state.secrets(secret_names(lab.stack.network), create=False)


def refused_login(status: str) -> bool:
    return "Error" in status.split("CascadeList", 1)[-1]


def test_lab_rotation_of_each_kind_refuses_the_old_credentials(dev: RunningLab) -> None:
    lab = lab_of(dev)
    rotate(lab, None)  # the pins, as the program makes them
    old = secrets(lab)
    for kind in ("cascade", "admin", "hub"):
        print(kind, rotate(lab, kind))
    new = secrets(lab)
    home, bridge = lab.nodes["home"], lab.nodes[SITE]
    assert not admin_accepted(home, old[admin_secret("home")])
    assert admin_accepted(home, new[admin_secret("home")])
    assert not admin_accepted(bridge, old[admin_secret(SITE)])
    assert admin_accepted(bridge, new[admin_secret(SITE)])
    assert not admin_accepted(home, old[hub_secret("HYBRID")], hub="HYBRID")
    assert admin_accepted(home, new[hub_secret("HYBRID")], hub="HYBRID")
    admin = new[admin_secret("home")]
    assert refused_login(cascade_login(home, old[CASCADE_USER], admin))
    assert "Online (Established)" in cascade_login(home, new[CASCADE_USER], admin)
    # The certificate: the server's is a new one, and every cascade pins it.
    before = Session(transport(lab, home), specs(lab).server).server_certificate()
    print(rotate(lab, "certificate"))
    after = Session(transport(lab, home), specs(lab).server).server_certificate()
    assert after != before and certificate_name(after) == "hybrid-cloud-rotation-1"
    green, took = wait_for_matrix(lab.layout, 30)
    assert green, f"the matrix is not green {took:.0f} s after the rotations"


def test_lab_status_says_a_cascade_would_fail_at_its_next_reconnect(dev: RunningLab) -> None:
    """The home server's user gets another password by hand (saved): the cascade stays up
    (SoftEther cuts no session), so pings pass, but the two ends no longer agree."""
    lab = lab_of(dev)
    server = specs(lab).server

    def report() -> list[NodeReport]:
        return lab_report(lab).nodes  # `hybrid status` of the lab, from the operator's place

    assert all(not n.credentials for n in report())
    by_hand = Session(transport(lab, lab.nodes["home"]), server)
    set_pw = [
        v.Command("UserPasswordSet", ("hybrid-vpc", v.SecretArg(SecretStr("setByHand42x"), "/PASSWORD")), hub="HYBRID"),
        v.Command("Flush"),
    ]
    by_hand.runner.run(set_pw, 30)
    nodes = {n.site: n for n in report()}
    assert nodes[SITE].credentials == (
        "cascade HYBRID: its password differs from the home server's user HYBRID/hybrid-vpc: it"
        " works now and fails at its next reconnect (pulumi up sets both ends)",
    )
    assert all(p.up for p in nodes[SITE].pings)  # not down yet: the time bomb
    assert not nodes["Hybrid-VNet"].credentials
    restore = [
        v.Command("UserPasswordSet", ("hybrid-vpc", v.SecretArg(SecretStr(secrets(lab)[CASCADE_USER]), "/PASSWORD")), hub="HYBRID"),
        v.Command("Flush"),
    ]
    by_hand.runner.run(restore, 30)
    assert all(not n.credentials for n in report())
