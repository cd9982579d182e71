"""The session against a fake transport that replays captured vpncmd output."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from softether import hostos
from softether import vpncmd as v
from softether.errors import (
    AccessDeniedError,
    CommandError,
    NotConvergedError,
    StateDirError,
    VpncmdTimeoutError,
)
from softether.plan import Change
from softether.session import Plan, Session
from softether.transport import RunRecord, RunResult

from .helpers import (
    FAKE,
    answer,
    error_script,
    mutating_commands,
    reference_specs,
    script_run,
    vpncmd_echo,
    vpncmd_output,
)

SPECS = reference_specs(server_address="198.51.100.1")
# The OS facts of a node whose SoftEther administration is already local only.
LOCAL_ADMIN = (
    f"@@file /var/lib/softether/adminip.txt\n{hostos.admin_ip_text()}@@config\nyes\n@@end\n"
)


@dataclass
class FakeTransport:
    """Answers read scripts command by command from a scenario's fixture files, and any other
    script with success."""

    reads: list[str]  # fixture scenarios, one per read session, in order
    host: str = "fake-node"
    records: list[RunRecord] = field(default_factory=list)
    connects: int = 0
    aborted: bool = False
    timed_out: bool = False
    host_facts: str = LOCAL_ADMIN  # the answer to the OS facts script

    def run(
        self,
        command: str,
        *,
        stdin: bytes = b"",
        timeout: float,
        redacted_stdin: str = "",
        abort_on: Sequence[str] = (),
    ) -> RunResult:
        self.records.append(RunRecord(command, redacted_stdin, 0, 0.0))
        if "echo @@end" in command:
            return RunResult(0, self.host_facts, "", 0.0)
        if "vpncmd" not in command:
            return RunResult(0, "@@end\n", "", 0.0)
        if self.aborted:
            return RunResult(
                -1, "Password: ***\n\n" + v.ACCESS_DENIED_TEXT, "@@pid 4242\n", 0.1, aborted=True
            )
        if self.timed_out:
            return RunResult(-1, "", "@@pid 4242\n", timeout, timed_out=True)
        lines = redacted_stdin.splitlines()
        real = script_run(command, stdin)  # the script as run, secrets included
        if lines and lines[0] == "ListenerList":
            return RunResult(0, answer(self.reads.pop(0), real, lines), "@@pid 1\n", 0.1)
        return RunResult(0, vpncmd_echo(real), "", 0.1)

    def close(self) -> None:
        pass


def test_session_converged_node_needs_one_read_and_sends_nothing() -> None:
    t = FakeTransport(["server_converged_read"])
    result = Session(t, SPECS.server).converge()
    assert not result.changed and result.vpncmd_sessions == 1
    assert next(r for r in t.records if "vpncmd" in r.command).stdin.startswith("ListenerList")


def test_session_result_counts_the_mutating_commands_it_sent() -> None:
    t = FakeTransport(["server_fresh_read", "server_converged_read"])
    result = Session(t, SPECS.server).converge()
    assert result.changed and result.mutating_commands > 0
    assert result.mutating_commands == mutating_commands(t.records)
    again = FakeTransport(["server_converged_read"])
    assert Session(again, SPECS.server).converge().mutating_commands == 0


def test_session_apply_reports_first_failure_with_code_name_and_masked_output() -> None:
    specs = reference_specs()
    cmds = error_script(specs)
    out = vpncmd_output("server_apply_errors", cmds)

    class Replay(FakeTransport):
        def run(self, command: str, **kw: object) -> RunResult:  # type: ignore[override]
            self.records.append(RunRecord(command, str(kw.get("redacted_stdin", "")), 0, 0.0))
            return RunResult(0, out + "VPN Server>Flush\nSaving completed.\n", "", 0.2)

    session = Session(Replay([]), specs.server)
    with pytest.raises(CommandError) as err:
        session.apply(Plan((Change("errors", tuple(cmds)),), ()))
    e = err.value
    assert e.code == 57 and e.code_name == "ERR_HUB_ALREADY_EXISTS"
    assert e.command == "HubCreate HYBRID /PASSWORD:***"
    assert (
        "fake-node: HubCreate HYBRID /PASSWORD:*** failed: error 57 (ERR_HUB_ALREADY_EXISTS)"
        in str(e)
    )
    assert FAKE not in str(e)


def test_session_echoed_secrets_are_masked_in_error_output() -> None:
    specs = reference_specs()
    pw = specs.server.admin_password.get_secret_value()
    session = Session(FakeTransport([]), specs.server)
    assert session.mask(f"VPN Server>HubCreate HYBRID /PASSWORD:{pw}") == (
        "VPN Server>HubCreate HYBRID /PASSWORD:***"
    )


def test_session_access_denied_fails_at_once_and_kills_the_remote_vpncmd() -> None:
    t = FakeTransport([], aborted=True)
    with pytest.raises(AccessDeniedError, match="fake-node: vpncmd: access denied"):
        Session(t, SPECS.server).converge()
    assert t.records[-1].command.startswith("kill -TERM 4242")


def test_session_timeout_is_an_error_not_a_hang() -> None:
    t = FakeTransport([], timed_out=True)
    with pytest.raises(VpncmdTimeoutError, match="did not finish within 15 s"):
        Session(t, SPECS.server).converge()


def test_session_not_converged_when_the_node_does_not_change() -> None:
    t = FakeTransport(["server_fresh_read", "server_fresh_read"])
    with pytest.raises(NotConvergedError) as err:
        Session(t, SPECS.server).converge()
    assert "+ hub HYBRID" in err.value.remaining
    vpncmd_scripts = [r.stdin for r in t.records if "vpncmd" in r.command]
    assert len(vpncmd_scripts) == 3  # read, one apply script, re-read
    assert vpncmd_scripts[1].splitlines()[-1] == "Flush"
    assert FAKE not in "".join(vpncmd_scripts)


def test_session_refuses_a_state_dir_without_softethers_configuration() -> None:
    """adminip.txt outside the directory SoftEther reads it from would restrict nothing."""

    t = FakeTransport(["server_converged_read"], host_facts="@@config\n@@end\n")
    spec = SPECS.server.model_copy(update={"state_dir": "/opt/nowhere"})
    with pytest.raises(StateDirError, match=r"no /opt/nowhere/vpn_server.config: SoftEther reads adminip.txt"):
        Session(t, spec).converge()
    assert mutating_commands(t.records) == 0
