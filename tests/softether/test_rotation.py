"""Rotation plans (pure) and which cascades a new spec rotates: the bridge's cascade gets the
new password and a controlled reconnect in one script, the admin password reached with the
previous one is set last, the server's certificate is regenerated when another is wanted."""

from __future__ import annotations

from softether.facts import read_commands
from softether.plan import Rotating, commands, plan
from softether.session import rotated_cascades

from .helpers import fixture_state, reference_specs

OLD = reference_specs(server_address="198.51.100.1")
NEW = reference_specs(server_address="198.51.100.1", prefix="rotated-secret")
BRIDGE_OLD, BRIDGE_NEW = OLD.bridges["Hybrid-VPC"], NEW.bridges["Hybrid-VPC"]


def test_rotated_cascades_are_those_whose_password_differs_from_the_previous_spec() -> None:
    assert rotated_cascades(BRIDGE_NEW, BRIDGE_OLD) == {("bridge", "hybrid")}
    assert rotated_cascades(BRIDGE_OLD, BRIDGE_OLD) == frozenset()
    assert rotated_cascades(BRIDGE_NEW, None) == frozenset()


def test_rotated_cascade_gets_its_password_then_a_controlled_reconnect() -> None:
    # The converged bridge holds the old password; SoftEther cannot show it, so without the
    # rotation the plan is empty and the new one would wait for some later reconnect.
    state = fixture_state("bridge_converged_read", read_commands(BRIDGE_OLD), server=False)
    assert plan(BRIDGE_NEW, state) == ()
    ch = plan(BRIDGE_NEW, state, rotating=Rotating(cascades=frozenset({("bridge", "hybrid")})))
    assert [c.name for c in commands(ch)] == ["CascadeOffline", "CascadePasswordSet", "CascadeOnline"]
    assert ch[0].summary == "~ cascade BRIDGE/HYBRID: password rotated, reconnect"
    assert "rotated-secret" not in " ".join(str(c) for c in commands(ch))  # masked


def test_admin_password_reached_with_the_previous_one_is_set_last() -> None:
    state = fixture_state("bridge_converged_read", read_commands(BRIDGE_OLD), server=False)
    ch = plan(BRIDGE_NEW, state, rotating=Rotating(admin_stale=True))
    assert ch[-1].summary == "~ admin password: rotate (reached with the previous one)"
    assert [c.name for c in ch[-1].commands] == ["ServerPasswordSet"]


def test_server_certificate_is_regenerated_only_when_another_is_wanted() -> None:
    state = fixture_state("server_converged_read", read_commands(OLD.server), server=True)
    wanted = OLD.server.model_copy(update={"certificate_rotation": 3})
    assert wanted.certificate_name == "hybrid-cloud-rotation-3"
    ch = plan(wanted, state, rotating=Rotating(certificate_name="hybrid-cloud-rotation-2"))
    assert [c.summary for c in ch] == [
        "~ server certificate: hybrid-cloud-rotation-2 -> new self-signed hybrid-cloud-rotation-3"
    ]
    assert [str(c) for c in ch[0].commands] == ["ServerCertRegenerate hybrid-cloud-rotation-3"]
    assert plan(wanted, state, rotating=Rotating(certificate_name="hybrid-cloud-rotation-3")) == ()
    # Rotation 0: the user's server keeps its own certificate, whatever its name.
    assert plan(OLD.server, state, rotating=Rotating(certificate_name="home.example")) == ()
