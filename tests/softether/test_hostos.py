from __future__ import annotations

import re
import subprocess
import tempfile
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from softether import hostos
from softether.spec import BridgeSpec, HostOsSpec

from .helpers import reference_specs

BRIDGE: BridgeSpec = reference_specs().bridges["Hybrid-VPC"]


def host_os() -> HostOsSpec:
    assert BRIDGE.host_os is not None
    return BRIDGE.host_os


H = host_os()
# What every node's facts end with when SoftEther administration is local only.
ADMIN_LOCAL = f"@@file /var/lib/softether/adminip.txt\n{hostos.admin_ip_text()}@@config\nyes\n"

CONVERGED = f"""@@dev
3: tap_vpntap: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UNKNOWN mode DEFAULT group default qlen 1000\\    link/ether {H.mac} brd ff:ff:ff:ff:ff:ff
@@addr
3: tap_vpntap    inet 192.168.10.2/24 scope global tap_vpntap\\       valid_lft forever
@@route
192.168.1.0/24 via 192.168.10.1
192.168.10.0/24 proto kernel scope link src 192.168.10.2
192.168.30.0/24 via 192.168.10.1
192.168.31.0/24 via 192.168.10.1
@@forward
1
@@file /etc/systemd/system/hybrid-bridge-net.service
{hostos.unit_text(H)}@@file /etc/sysctl.d/60-hybrid-ip-forward.conf
{hostos.sysctl_text(H)}@@file /etc/systemd/system/hybrid-bridge-net-watch.service
{hostos.watch_unit_text(H)}@@link /etc/systemd/system/multi-user.target.wants/hybrid-bridge-net.service
/etc/systemd/system/hybrid-bridge-net.service
@@link /etc/systemd/system/softether-vpnbridge.service.wants/hybrid-bridge-net.service
/etc/systemd/system/hybrid-bridge-net.service
@@link /etc/systemd/system/multi-user.target.wants/softether-vpnbridge.service
/lib/systemd/system/softether-vpnbridge.service
@@link /etc/systemd/system/multi-user.target.wants/hybrid-bridge-net-watch.service
/etc/systemd/system/hybrid-bridge-net-watch.service
@@watch
yes
{ADMIN_LOCAL}@@end
"""


def test_hostos_facts_parse_ip_output() -> None:
    f = hostos.parse_facts(CONVERGED)
    assert f.device_exists and f.device_up and f.ip_forward
    assert f.addresses == (IPv4Interface("192.168.10.2/24"),)
    assert (IPv4Network("192.168.1.0/24"), IPv4Address("192.168.10.1")) in f.routes
    assert len(f.routes) == 3  # the connected route has no "via"


def test_hostos_converged_plan_is_empty() -> None:
    assert hostos.plan(BRIDGE, hostos.parse_facts(CONVERGED)) == ()


def test_hostos_tap_with_softethers_random_mac_gets_the_sites_mac() -> None:
    # A rebuilt VM's tap: SoftEther picked a random MAC; the site's fixed one is applied, and
    # re-applied by the unit whenever SoftEther re-creates the tap.
    assert H.mac is not None
    facts = hostos.parse_facts(CONVERGED.replace(f"link/ether {H.mac}", "link/ether 5e:6a:3e:29:98:48"))
    assert [(c.summary, c.shell) for c in hostos.plan(BRIDGE, facts)] == [
        (f"~ tap_vpntap MAC {H.mac}", f"ip link set dev tap_vpntap address {H.mac}")
    ]
    assert f"ExecStart=/sbin/ip link set dev tap_vpntap address {H.mac}" in hostos.unit_text(H)


def test_hostos_missing_tap_plans_address_routes_and_persistence() -> None:
    f = hostos.parse_facts("@@dev\n@@addr\n@@route\n@@forward\n0\n@@end\n")
    lines = [c.summary for c in hostos.plan(BRIDGE, f)]
    assert "+ tap_vpntap address 192.168.10.2/24" in lines
    assert "+ route 192.168.21.0/24 via 192.168.10.1 dev tap_vpntap" not in lines  # own range
    assert "+ route 192.168.30.0/24 via 192.168.10.1 dev tap_vpntap" in lines
    assert "~ net.ipv4.ip_forward = 1" in lines
    assert "~ file /etc/systemd/system/hybrid-bridge-net.service" in lines
    assert lines[-2:] == [
        "~ systemd daemon-reload",
        "~ tap watcher hybrid-bridge-net-watch.service: (re)start",
    ]
    script = hostos.apply_script(BRIDGE, hostos.plan(BRIDGE, f))
    assert script.startswith("set -e\n") and "/sys/class/net/tap_vpntap" in script.splitlines()[1]


def test_hostos_extra_route_and_address_are_removed() -> None:
    text = CONVERGED.replace(
        "192.168.31.0/24 via 192.168.10.1\n",
        "192.168.31.0/24 via 192.168.10.1\n10.9.0.0/16 via 192.168.10.9\n",
    ).replace("@@route", "    inet 192.168.10.77/24 scope global secondary\n@@route")
    lines = [c.summary for c in hostos.plan(BRIDGE, hostos.parse_facts(text))]
    assert lines == [
        "- tap_vpntap address 192.168.10.77/24",
        "- route 10.9.0.0/16 via 192.168.10.9 dev tap_vpntap",
    ]


def test_hostos_unit_reapplies_everything_after_the_service() -> None:
    text = hostos.unit_text(H)
    assert "BindsTo=softether-vpnbridge.service" in text
    assert "WantedBy=softether-vpnbridge.service multi-user.target" in text
    for r in H.routes:
        assert f"ip route replace {r.network} via {r.via} dev tap_vpntap" in text


def test_hostos_server_turns_offloads_off_except_fixed_ones() -> None:
    server = reference_specs().server
    f = hostos.parse_facts(
        "@@ethtool eth1\nFeatures for eth1:\nrx-checksumming: on\ntx-checksumming: off\n"
        "tcp-segmentation-offload: on\ngeneric-segmentation-offload: off\n"
        f"generic-receive-offload: on [fixed]\n{ADMIN_LOCAL}@@end\n"
    )
    (change,) = hostos.plan(server, f)
    assert change.shell == "ethtool -K eth1 rx off tso off"


def test_hostos_enables_the_projects_own_service_unit_where_it_exists() -> None:
    # cloud-init writes the project's unit into /etc/systemd/system and enables it; the
    # enable link must keep pointing there (not at a packaged unit that may not exist).
    own = CONVERGED.replace(
        "/lib/systemd/system/softether-vpnbridge.service",
        "/etc/systemd/system/softether-vpnbridge.service",
    ).replace("@@end", "@@own\nyes\n@@end")
    assert hostos.plan(BRIDGE, hostos.parse_facts(own)) == ()
    (fix,) = hostos.plan(
        BRIDGE, hostos.parse_facts(CONVERGED.replace("@@end", "@@own\nyes\n@@end"))
    )
    assert fix.shell.endswith(
        "ln -sfn /etc/systemd/system/softether-vpnbridge.service "
        "/etc/systemd/system/multi-user.target.wants/softether-vpnbridge.service"
    )


def test_hostos_watcher_not_running_is_restarted_alone() -> None:
    # Issue 15 #4: the tap comes back bare after SoftEther's watchdog restarts the worker;
    # the watcher that re-applies address and routes must run, and the plan starts it.
    stopped = hostos.parse_facts(CONVERGED.replace("@@watch\nyes\n", "@@watch\n"))
    (change,) = hostos.plan(BRIDGE, stopped)
    assert change.summary == "~ tap watcher hybrid-bridge-net-watch.service: (re)start"
    assert "systemctl restart hybrid-bridge-net-watch.service" in change.shell
    assert "setsid sh -c" in change.shell  # where systemd does not run (the lab)


def test_hostos_watcher_unit_runs_the_same_script_as_the_lab() -> None:
    text = hostos.watch_unit_text(H)
    (line,) = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
    quoted = line.removeprefix('ExecStart=/bin/sh -c "').removesuffix('"')
    # systemd's own unquoting of ExecStart: \\ and \" inside quotes, $$ and %% specifiers.
    unquoted = quoted.replace('\\"', '"').replace("\\\\", "\\")
    assert unquoted.replace("$$", "$").replace("%%", "%") == hostos.watch_script(H)
    assert "Restart=always" in text
    for r in H.routes:
        assert f"ip route replace {r.network} via {r.via} dev tap_vpntap" in hostos.watch_script(H)


def _systemd_unquote(line: str) -> str:
    """ExecStart=/bin/sh -c "..." -> the script (systemd's unquoting: \\\\, \\", $$, %%)."""
    quoted = line.removeprefix('ExecStart=/bin/sh -c "').removesuffix('"')
    unquoted = quoted.replace('\\"', '"').replace("\\\\", "\\")
    return unquoted.replace("$$", "$").replace("%%", "%")


def test_hostos_unit_waits_for_the_tap_with_the_one_tap_wait() -> None:
    lines = [ln for ln in hostos.unit_text(H).splitlines() if ln.startswith("ExecStart=/bin/sh")]
    assert [_systemd_unquote(ln) for ln in lines] == [
        hostos.wait_for_device(H.device, hostos.TAP_WAIT_S)
    ]
    assert hostos.wait_for_device(H.device, hostos.TAP_WAIT_S) in hostos.apply_script(BRIDGE, ())


def test_hostos_tap_wait_quotes_the_device_name() -> None:
    # A name the shell would split or unquote still waits for exactly that device and names it.
    res = subprocess.run(
        ["sh", "-c", hostos.wait_for_device("no'such tap", 0.1)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert res.returncode == 3
    assert res.stderr.strip() == "device no'such tap did not appear"


def _watch_reactions(lines: list[str], tmp: Path, flags: str = "0x1003") -> list[str]:
    """What the watcher script does for each `ip monitor` line: "apply" or nothing (its `ip`
    source, its apply() and the tap's flags (`flags`: up) replaced by stand-ins; the case
    logic runs as on the node)."""
    script = hostos.watch_script(H)
    monitor = "/sbin/ip monitor link address route"
    assert monitor in script and "apply() {" in script
    (tmp / "flags").write_text(flags + "\n")
    script = script.replace(monitor, "cat").replace("/sys/class/net/tap_vpntap/flags", str(tmp / "flags"))
    script = re.sub(r"apply\(\) \{.*?; \}; ", 'apply() { echo "apply"; }; ', script, count=1)
    out = []
    for line in lines:
        run = subprocess.run(["sh", "-c", script], input=line + "\n", capture_output=True, text=True, timeout=10, check=True)
        out.append(run.stdout.strip())
    return out


def test_hostos_watcher_re_applies_when_the_tap_s_address_or_a_route_is_deleted(tmp_path: Path) -> None:
    """Issue 24 (risk): an address or route deleted by hand kept the site dark until the next
    converge; the watcher reacted to link events only. A tap set down (the kernel drops its
    routes) is left to the reconciler, as before."""
    route = H.routes[0]
    deleted = [
        f"Deleted 7: tap_vpntap    inet {H.address} brd 192.168.10.255 scope global tap_vpntap",
        f"Deleted {route.network} via {route.via} dev tap_vpntap proto static",
        f"Deleted {route.network} via {route.via} dev tap_vpntap",
        "Deleted 7: tap_vpntap: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN",
        "Deleted 192.168.99.0/24 via 192.168.10.9 dev eth0 proto static",
    ]
    assert _watch_reactions(deleted, tmp_path) == ["apply", "apply", "apply", "", ""]
    assert _watch_reactions(deleted[:3], tmp_path, flags="0x1002") == ["", "", ""]  # tap down


def test_hostos_admin_ip_local_only_on_every_node() -> None:
    """Audit 2, finding 4: SoftEther served administration to the whole internet on the
    home server's forwarded listener; adminip.txt keeps it to the machine itself."""
    text = hostos.admin_ip_text()
    assert [ln for ln in text.splitlines() if not ln.startswith("#")] == ["127.0.0.1", "::1"]
    for spec in (reference_specs().server, BRIDGE):
        bare = "@@config\nyes\n@@end\n"
        [change] = [c for c in hostos.plan(spec, hostos.parse_facts(bare)) if "adminip" in c.summary]
        assert change.summary == "~ /var/lib/softether/adminip.txt: SoftEther administration from this machine only"
        # The shell writes exactly the text (a scratch directory stands for the node's).
        with tempfile.TemporaryDirectory() as d:
            path = f"{d}/adminip.txt"
            subprocess.run(["sh", "-c", change.shell.replace("/var/lib/softether", d)], check=True, timeout=10)
            assert Path(path).read_text() == text


def test_hostos_admin_ip_of_the_user_is_replaced_and_a_tarball_server_has_its_own_dir() -> None:
    server = reference_specs().server.model_copy(update={"state_dir": "/usr/local/vpnserver"})
    theirs = "@@file /usr/local/vpnserver/adminip.txt\n192.168.1.0/24\n*\n@@config\nyes\n@@end\n"
    [change] = hostos.plan(server, hostos.parse_facts(theirs))
    assert change.summary.startswith("~ /usr/local/vpnserver/adminip.txt: ")
    script = hostos.facts_script(server)
    assert "cat /usr/local/vpnserver/adminip.txt" in script
    assert "[ -f /usr/local/vpnserver/vpn_server.config ] && echo yes" in script
    assert "[ -f /var/lib/softether/vpn_bridge.config ]" in hostos.facts_script(BRIDGE)


USER_DATA_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAv8diZe/uasM5E/P9jAglIPEAaEYcpRirCBd10iAPxU"


def test_hostos_a_bridge_holding_its_user_data_host_key_gets_a_new_one() -> None:
    """Audit 2 #11: the user data's host key serves the first contact only. A node still
    holding it gets a new key (sshd reloaded); one holding another is left alone; a node
    whose spec retires none is not even read (the home server is the user's machine)."""
    spec = BRIDGE.model_copy(update={"host_os": H.model_copy(update={"retired_host_key": USER_DATA_KEY})})
    script = hostos.facts_script(spec)
    assert f"echo @@hostkey; cat {hostos.HOST_KEY}.pub 2>/dev/null; echo" in script
    assert "@@hostkey" not in hostos.facts_script(BRIDGE)
    # cloud-init writes the key without a final newline; the next section still parses.
    text = f"@@hostkey\n{USER_DATA_KEY} root@vm\n\n@@config\nyes\n@@end\n"
    facts = hostos.parse_facts(text)
    assert facts.host_key == USER_DATA_KEY and facts.configured_here
    [change] = [c for c in hostos.plan(spec, facts) if "host key" in c.summary]
    assert change.summary == "~ ssh host key: a new one (the user data's served the first contact only)"
    assert "ssh-keygen -q -t ed25519" in change.shell and change.shell.endswith("systemctl reload ssh.service")
    rotated = hostos.parse_facts("@@hostkey\nssh-ed25519 AAAAother\n@@config\nyes\n@@end\n")
    assert not [c for c in hostos.plan(spec, rotated) if "host key" in c.summary]


def test_hostos_bridge_files_are_written_when_missing_or_changed_and_read_back() -> None:
    """HostOsSpec.files (a pair's failover controller package): read by the facts script,
    written when absent or different, nothing to do when they match (fails on main: no
    such field)."""
    path = "/usr/local/lib/hybrid-cloud/softether/failover/__main__.py"
    text = "import sys\n\n@decorated\ndef main() -> None:\n    pass\n"
    spec = BRIDGE.model_copy(update={"host_os": H.model_copy(update={"files": ((path, text),)})})
    assert f"echo @@file {path}; cat {path}" in hostos.facts_script(spec)
    missing = hostos.plan(spec, hostos.parse_facts(CONVERGED))
    assert [c.summary for c in missing] == [f"~ file {path}", "~ systemd daemon-reload"]
    assert "main()" in missing[0].shell
    there = CONVERGED.replace("@@watch\n", f"@@file {path}\n{text}@@watch\n")
    assert hostos.plan(spec, hostos.parse_facts(there)) == ()
    changed = there.replace("pass", "return")
    assert hostos.plan(spec, hostos.parse_facts(changed))[0].summary == f"~ file {path}"


def test_hostos_facts_cut_short_are_an_error_not_drift() -> None:
    # A script that ran out of time before @@config read as "no configuration here" and
    # `up` failed with a StateDirError naming a file that was there (CI, a loaded machine).
    cut = CONVERGED.split("@@watch")[0]
    with pytest.raises(ValueError, match="stopped after @@link"):
        hostos.parse_facts(cut)
    with pytest.raises(ValueError, match="before its first section"):
        hostos.parse_facts("")
