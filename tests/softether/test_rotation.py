"""Rotation plans (pure) and which cascades a new spec rotates: the bridge's cascade gets the
new password and a controlled reconnect in one script, the admin password reached with the
previous one is set last, the server's certificate is regenerated when another is wanted."""

from __future__ import annotations

import pytest

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


def test_session_reaches_a_node_with_the_previous_admin_password_and_sets_the_new_one_last() -> None:
    from softether import vpncmd as v
    from softether.errors import AccessDeniedError
    from softether.session import Session
    from softether.transport import RunResult

    from .test_session import FakeTransport

    refused = (NEW.server.admin_password.get_secret_value() + "\n").encode()

    class Rotating(FakeTransport):
        """The node still has the previous admin password: the new one is denied."""

        def run(self, command: str, *, stdin: bytes = b"", **kw: object) -> RunResult:  # type: ignore[override]
            if "vpncmd" in command and stdin.endswith(refused):
                return RunResult(-1, "Password: ***\n\n" + v.ACCESS_DENIED_TEXT, "@@pid 4242\n", 0.1, aborted=True)
            return super().run(command, stdin=stdin, **kw)  # type: ignore[arg-type]

    with pytest.raises(AccessDeniedError):  # without the previous spec: refused, as before
        Session(Rotating(["server_converged_read"]), NEW.server).compare()
    session = Session(Rotating(["server_converged_read"]), NEW.server, previous=OLD.server)
    p = session.compare()
    assert session.admin_stale
    assert p.lines()[-1] == "~ admin password: rotate (reached with the previous one)"
    session.apply(p)
    assert not session.admin_stale  # the re-read logs in with the new one
