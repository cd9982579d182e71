"""`hybrid status` / `hybrid preflight` without a lab: parsing, verdicts, formats, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cli.main import main
from cli.preflight import _about, _listeners, _objects
from cli.status import prometheus, to_json
from softether.facts import CascadeState, HubState, L3State, NodeState, Protocols
from softether.health import (
    NodeReport,
    Ping,
    Report,
    parse_pings,
    ping_script,
    text_lines,
    uptime,
    version,
)
from softether.outputs import OutputsError, node_output, parse_outputs, status_output

PING_OK = """@@0 PING 192.168.10.1 (192.168.10.1) 56(84) bytes of data.
@@1 PING 192.168.1.10 (192.168.1.10) from 192.168.20.100 : 56(84) bytes of data.
@@0
@@0 --- 192.168.10.1 ping statistics ---
@@0 3 packets transmitted, 3 received, 0% packet loss, time 401ms
@@0 rtt min/avg/max/mdev = 0.301/0.412/0.530/0.093 ms
@@1
@@1 --- 192.168.1.10 ping statistics ---
@@1 15 packets transmitted, 0 received, 100% packet loss, time 2999ms
"""
TARGETS = {"switch": "192.168.10.1", "home": "192.168.1.10", "Hybrid-VNet": "192.168.30.10"}


def test_status_parse_pings_reads_loss_and_rtt_and_a_missing_answer_is_down() -> None:
    switch, home, vnet = parse_pings(PING_OK, TARGETS)
    assert (switch.sent, switch.received, switch.up, switch.loss) == (3, 3, True, 0.0)
    assert switch.rtt_s == pytest.approx(0.000412)
    assert (home.sent, home.received, home.up, home.loss, home.rtt_s) == (15, 0, False, 1.0, None)
    assert (vnet.up, vnet.rtt_s) == (False, None)  # no output at all: down, not an error


def test_status_ping_script_sends_site_pings_from_the_private_address() -> None:
    from ipaddress import IPv4Address

    script = ping_script(TARGETS, IPv4Address("192.168.20.100"))
    assert "-I 192.168.20.100 192.168.1.10" in script and "-I 192.168.20.100 192.168.30.10" in script
    assert re.search(r"-w 3 192\.168\.10\.1 ", script)  # the switch: from the tap's address
    assert script.endswith(" wait") and script.count(") &") == 3


def test_status_uptime_and_version_from_vpncmd_items() -> None:
    items = {"Server Started at": "2026-12-02 (Wed) 06:19:21", "Current Time": "2026-12-02 07:20:22.697"}
    assert uptime(items) == 3661
    assert uptime({}) is None
    assert version({"Version": "Version 5.01 Build 9674   (English)"}) == "5.01 build 9674"


def _bridge(**kw: object) -> NodeReport:
    base: dict[str, object] = {
        "site": "Hybrid-VPC",
        "role": "bridge",
        "host": "198.51.100.11",
        "reachable": True,
        "version": "5.01 build 9674",
        "uptime_s": 75.0,
        "cascades": (CascadeState("HYBRID", "Online (Established)"),),
        "pings": (Ping("switch", "192.168.10.1", 3, 3, 0.0004), Ping("home", "192.168.1.10", 3, 3, 0.0007)),
    }
    return NodeReport(**(base | kw))  # type: ignore[arg-type]


def test_status_verdict_healthy_degraded_unreachable() -> None:
    assert Report("dev", [_bridge()]).exit_code == 0
    silent = _bridge(pings=(Ping("switch", "192.168.10.1", 15, 0, None),))
    assert Report("dev", [silent]).exit_code == 1
    assert silent.problems == ["tunnel DOWN (no reply from the L3 switch 192.168.10.1)"]
    assert Report("dev", [_bridge(drift=("- listener TCP 8888",))]).exit_code == 1
    retrying = _bridge(cascades=(CascadeState("HYBRID", "Retrying"),))
    assert retrying.problems == ["cascade HYBRID Retrying"]
    gone = _bridge(reachable=False, error="198.51.100.11: no SSH connection")
    assert Report("dev", [_bridge(), gone]).exit_code == 2
    assert text_lines(Report("dev", [silent, _bridge()]))[0] == "stack dev: DEGRADED (Hybrid-VPC) in 0.00 s"


def test_status_prometheus_is_openmetrics_text() -> None:
    silent = _bridge(pings=(Ping("switch", "192.168.10.1", 15, 0, None),), drift=("x", "y"))
    text = prometheus(Report("dev", [silent]))
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    families: dict[str, str] = {}
    for line in text.splitlines()[:-1]:
        if m := re.match(r"^# TYPE (\S+) (gauge|info)$", line):
            families[m.group(1)] = m.group(2)
            continue
        if line.startswith("# "):
            assert re.match(r"^# (HELP|UNIT) \S+ .+$", line), line
            continue
        m = re.match(r'^([a-z_]+)\{([a-z_]+="[^"]*",?)+\} (-?[0-9.e+-]+)$', line)
        assert m, line
        name = m.group(1)
        assert name in families or (name.endswith("_info") and families[name[:-5]] == "info"), line
    assert 'hybrid_tunnel_up{stack="dev",node="Hybrid-VPC",role="bridge"} 0' in text
    assert 'hybrid_cascade_established{stack="dev",node="Hybrid-VPC",role="bridge",cascade="HYBRID"} 1' in text
    assert 'hybrid_node_drift_changes{stack="dev",node="Hybrid-VPC",role="bridge"} 2' in text
    assert 'hybrid_status{stack="dev"} 1' in text
    # A family without a sample (no RTT when nothing answered) still has its TYPE line only.
    assert not re.search(r"^hybrid_tunnel_rtt_seconds", text, re.M)
    assert to_json(Report("dev", [silent]))["nodes"]["Hybrid-VPC"]["pings"]["switch"]["up"] is False


HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINdIiRMrTsppL+7H/z898OS5/Q+tMXJ0BFarNmT63pN2"


def _spec() -> dict[str, object]:
    from softether.derive import derive, secret_names
    from softether.spec import spec_to_dict
    from topology import load_stack, plan_routes

    net = load_stack("dev").network
    nodes = derive(net, plan_routes(net), {n: "x" * 16 for n in secret_names(net)})
    return spec_to_dict(nodes.bridges["Hybrid-VPC"], reveal=True)


def _outputs() -> dict[str, object]:
    from ipaddress import IPv4Address

    node = node_output("bridge", "198.51.100.11", 22, "root", HOST_KEY, _spec())
    return {"status": status_output("dev", IPv4Address("192.168.10.1"), {}, {"Hybrid-VPC": node})}


def test_status_outputs_problems_are_one_line_naming_field_and_value() -> None:
    assert parse_outputs(json.dumps(_outputs()), "f").status.nodes["Hybrid-VPC"].ssh.port == 22
    cases = {
        '{"status": "[secret]"}': "f: status: '[secret]': use pulumi stack output --json --show-secrets",
        '{"routes": []}': "f: no 'status' output",
        "not json": "f: not JSON",
    }
    for text, want in cases.items():
        with pytest.raises(OutputsError) as e:
            parse_outputs(text, "f")
        assert e.value.problems[0].startswith(want)
    bad = _outputs()
    bad["status"]["nodes"]["Hybrid-VPC"]["ssh"]["port"] = 70000  # type: ignore[index]
    with pytest.raises(OutputsError) as e:
        parse_outputs(json.dumps(bad), "f")
    assert e.value.problems == [
        "f: status.nodes.Hybrid-VPC.ssh.port: Input should be less than or equal to 65535 (got 70000)"
    ]


def test_status_cli_refuses_bad_input_before_contacting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.json"
    out.write_text(json.dumps(_outputs()))
    key = tmp_path / "key"
    key.write_text("not used")
    cases = [
        (["--stack", "prod", "--outputs", str(out), "--key", str(key)],
         "--stack: 'prod', but the outputs are of stack 'dev'"),
        (["--outputs", str(out), "--key", str(tmp_path / "nope")], f"--key: {tmp_path / 'nope'}: No such file"),
        (["--outputs", str(tmp_path / "none.json")], f"--outputs: {tmp_path / 'none.json'}: No such file"),
        (["--outputs", str(out), "--key", str(key), "--watch", "5", "--count", "0"], "--count: 0 is not between"),
    ]
    for args, want in cases:
        assert main(["status", *args]) == 3
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(f"hybrid status: {want}"), err


def _node(data: dict[str, object]) -> dict[str, object]:
    return data["status"]["nodes"]["Hybrid-VPC"]  # type: ignore[index]


def _bad_outputs(case: str, tmp_path: Path) -> tuple[str, str]:
    """(the --outputs argument, what its one line names) for each kind of bad input."""
    data = _outputs()
    path = tmp_path / "out.json"
    if case == "host-key":
        _node(data)["ssh"]["hostKey"] = "ssh-ed25519 AAAA"  # type: ignore[index]
        want = "status.nodes.Hybrid-VPC.ssh.hostKey: 'ssh-ed25519 AAAA'"
    elif case == "spec":
        _node(data)["spec"] = {"kind": "bridge"}
        want = "status.nodes.Hybrid-VPC.spec"
    elif case == "no-nodes":
        data["status"]["nodes"] = {}  # type: ignore[index]
        want = "status.nodes"
    elif case == "unknown-fields":
        _node(data)["ssh"].update({f"x{i}": i for i in range(20_000)})  # type: ignore[index]
        want = "status.nodes.Hybrid-VPC.ssh.x0"
    else:
        raise AssertionError(case)
    path.write_text(json.dumps(data))
    return str(path), want


@pytest.mark.parametrize(
    "case",
    ["host-key", "spec", "no-nodes", "unknown-fields", "not-utf8", "nested", "huge", "key", "huge-key"],
)
def test_status_cli_every_bad_input_is_one_line_and_exit_3(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 24, defect 4: each was a traceback and exit 1 (read as "degraded"), an endless
    read, 20,000 lines, or HEALTHY."""
    import subprocess

    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_outputs()))
    raw = tmp_path / "raw"
    args = ["--outputs", str(good), "--key", str(key)]
    if case == "not-utf8":
        raw.write_bytes(b'{"status": "\xff\xfe"}')
        args[1], want = str(raw), f"--outputs: {raw}: not UTF-8 text (byte 12)"
    elif case == "nested":
        raw.write_text("[" * 200_000)
        args[1], want = str(raw), f"{raw}: not JSON (nested too deeply)"
    elif case == "huge":
        args[1], want = "/dev/zero", "--outputs: /dev/zero: larger than"
    elif case == "key":
        raw.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n")
        args[3], want = str(raw), f"--key: {raw}: not a private key"
    elif case == "huge-key":
        args[3], want = "/dev/zero", "--key: /dev/zero: larger than"
    else:
        args[1], want = _bad_outputs(case, tmp_path)
    assert main(["status", *args]) == 3
    err = capsys.readouterr().err.splitlines()
    print("\n".join(err))
    assert err and err[0].startswith("hybrid status: ") and want in err[0], err
    assert len(err) == (10 if case == "unknown-fields" else 1), err
    assert "-----BEGIN" not in "\n".join(err)  # a key's text is never echoed


def test_status_an_sshd_that_never_answers_leaves_no_library_traceback(tmp_path: Path) -> None:
    """Issue 24, defect 5: paramiko's own tracebacks (three) reached stderr, though the
    report was right. The "sshd" is a loopback socket that accepts and says nothing."""
    import socket
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        data = _outputs()
        _node(data)["ssh"].update({"host": "127.0.0.1", "port": silent.getsockname()[1]})  # type: ignore[union-attr]
        out = tmp_path / "out.json"
        out.write_text(json.dumps(data))
        run = subprocess.run(
            [sys.executable, "-m", "cli", "status", "--outputs", str(out), "--key", str(key)],
            capture_output=True, text=True, timeout=120, cwd=root, check=False,
        )  # fmt: skip
    print(run.stdout, run.stderr)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "UNREACHABLE" in run.stdout
    assert run.stderr == ""


def test_status_a_report_waits_for_no_node_longer_than_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node whose SSH or SoftEther stops answering mid-report (31 s before) is reported
    UNREACHABLE once the report's bound has passed; the others are reported as they are."""
    import threading
    import time
    from ipaddress import IPv4Address

    from softether import health
    from softether.outputs import Outputs

    release = threading.Event()

    def probe(site: str, node: object, transport: object, targets: object) -> NodeReport:
        if site == "stuck":
            release.wait(10)
        return NodeReport(site, "bridge", "h", reachable=True)

    monkeypatch.setattr(health, "probe", probe)
    monkeypatch.setattr(health, "REPORT_DEADLINE_S", 0.5, raising=False)
    node = _node(_outputs())
    nodes = {"ok": node, "stuck": node}
    outputs = Outputs.model_validate({"status": status_output("dev", IPv4Address("192.168.10.1"), {}, nodes)})
    t0 = time.monotonic()
    try:
        report = health.check(outputs, "key")
    finally:
        release.set()
    took = time.monotonic() - t0
    ok, stuck = report.nodes
    assert took < 5, took
    assert ok.reachable and not ok.problems
    assert not stuck.reachable and "no answer within 0.5 s" in stuck.error
    assert report.exit_code == 2


def test_preflight_reads_listeners_and_names_what_the_plan_does_per_object() -> None:
    ss = (
        'LISTEN 0 128 198.51.100.1:22 0.0.0.0:* users:(("sshd",pid=1,fd=3))\n'
        'LISTEN 0 4096 0.0.0.0:5555 0.0.0.0:* users:(("vpnserver",pid=2,fd=30))\n'
        "LISTEN 0 4096 [::]:443 [::]:*\n"
    )
    assert _listeners(ss) == {22: "sshd", 5555: "vpnserver", 443: "another process"}
    assert _about("+ hub HYBRID", "hub", "HYBRID")
    assert _about("~ user DEFAULT/operator: password", "hub", "DEFAULT")
    assert not _about("+ hub HYBRID2", "hub", "HYBRID")
    assert _about("+ L3 L3SW route 192.168.20.0/24 via 192.168.10.2", "L3 switch", "L3SW")
    assert _about("- L3 switch OLD", "L3 switch", "OLD")


def test_preflight_names_what_a_pruning_spec_would_delete_as_a_warning() -> None:
    """The stack's home spec prunes nothing; a spec that does (`prune_hubs`) makes preflight
    say DELETES for the user's hub and switch, from the planner's own lines."""
    from pydantic import SecretStr

    from softether.plan import plan
    from softether.spec import Hub, ServerSpec

    state = NodeState(
        admin_password_set=True,
        listeners={5555: True},
        hubs={"keep": HubState("KEEP"), "family": HubState("FAMILY")},
        l3_switches={"familysw": L3State("FAMILYSW", True, ())},
        protocols=Protocols(),
    )
    for prune, level, word in ((True, "WARN", "pulumi up DELETES it"), (False, "PASS", "left alone")):
        spec = ServerSpec(admin_password=SecretStr("a"), hubs=(Hub(name="KEEP"),), prune_hubs=prune)
        lines = [c.summary for c in plan(spec, state)]
        hubs, switches = (_objects(n, k, state, spec, lines) for n, k in (("hubs", "hub"), ("l3 switches", "L3 switch")))
        assert (hubs.level, switches.level) == (level, level)
        assert hubs.text == f"FAMILY: not the stack's, {word}; KEEP: adopted as it is"
        assert switches.text == f"FAMILYSW: not the stack's, {word}"


def test_preflight_cli_refuses_a_missing_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preflight", "--stack", "dev", "--key", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"hybrid preflight: --key: {tmp_path / 'nope'}: No such file or directory"]
