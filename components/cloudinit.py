"""The cloud-init user data of a bridge VM: pinned SSH host key, operator key, SoftEther.

Pure: strings in, a `#cloud-config` document out (the components feed it Pulumi outputs
through `apply`). The SoftEther configuration itself is not here: the `softether` dynamic
resource converges it over SSH once the VM answers with the pinned host key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import yaml

from softether.derive import FAILOVER_CONFIG, FAILOVER_LIB, FAILOVER_MODULE, FAILOVER_UNIT
from topology import SoftEtherOptions
from topology.model import RULESET_FILE

UPSTREAM_REPO = "https://github.com/SoftEtherVPN/SoftEtherVPN.git"
SRC_DIR = "/usr/local/src/SoftEtherVPN"
INSTALL_SCRIPT = "/usr/local/sbin/hybrid-install-softether"
IMAGE_FILE = "/etc/hybrid-cloud/image"  # what the VM was made from: the user data's own
SSHD = "ssh.service"
UNIT = "softether-vpnbridge.service"  # the name softether.spec.BridgeSpec restarts
# Where each source puts the bridge binary: upstream's CMake installs a wrapper script in
# the bin directory; Debian's package keeps the binary under libexec.
BRIDGE_BINARY = {
    "upstream": "/usr/local/bin/vpnbridge",
    "debian": "/usr/libexec/softether/vpnbridge/vpnbridge",
}
BUILD_PACKAGES = (
    "ca-certificates", "git", "cmake", "gcc", "g++", "make", "pkgconf",
    "libncurses-dev", "libreadline-dev", "libssl-dev", "libsodium-dev", "zlib1g-dev",
)  # fmt: skip
DEBIAN_PACKAGES = ("softether-vpnbridge", "softether-vpncmd")
@dataclass(frozen=True)
class HostKey:
    """An SSH host key pair in OpenSSH format (`ssh-ed25519 AAAA...` for the public half)."""

    private_openssh: str
    public_openssh: str


# liboqs builds every algorithm by default (8 min of the 9 min build on 2 cores, see the
# README). SoftEther offers the TLS groups X25519MLKEM768:p521_kyber1024:x25519_kyber768 before
# the classical ones (src/Mayaqua/Network.h, PQ_GROUP_LIST) and sets that list with
# SSL_set1_groups_list, which fails as a whole on one unknown name and silently leaves
# OpenSSL's classical defaults: the three KEMs behind those groups must stay, nothing else is
# used. Release: upstream's configure defaults to RelWithDebInfo (debug info nobody reads on a VM).
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DSE_PIDDIR=/run/softether",
    "-DSE_LOGDIR=/var/log/softether",
    "-DSE_DBDIR=/var/lib/softether",
    "-DOQS_MINIMAL_BUILD=KEM_ml_kem_768;KEM_kyber_768;KEM_kyber_1024",
)
# At first boot apt-daily / unattended-upgrades may hold the dpkg lock: wait for it, bounded.
DPKG_LOCK_TIMEOUT_S = 600
BUILD_STAMP = "/usr/local/share/hybrid-cloud/softether-build"


def _apt_install(packages: tuple[str, ...]) -> list[str]:
    """Install `packages` unless all are installed (a lab machine has them from packages.apt)."""
    names = " ".join(packages)
    return [
        f"if ! dpkg -s {names} >/dev/null 2>&1; then",
        f"  apt-get -o DPkg::Lock::Timeout={DPKG_LOCK_TIMEOUT_S} install -y --no-install-recommends {names}",
        "fi",
    ]


def build_stamp(options: SoftEtherOptions) -> str:
    """What the install script writes to BUILD_STAMP after a build: the commit and a digest
    of the build flags (another commit or other flags: another build)."""
    flags = hashlib.sha256(" ".join(CMAKE_FLAGS).encode()).hexdigest()[:12]
    return f"{options.upstream_commit} {flags}"


def install_script(options: SoftEtherOptions) -> str:
    """A shell script that installs SoftEther VPN Bridge from `options.source`.

    Upstream: clone the tag, refuse to build unless HEAD is the pinned commit (a moved tag
    must not change what runs), build with Debian's state paths, install. The same text runs
    on a VM (as root, into /) and in the lab (`lab.softether_build`), which sets `DESTDIR`
    (an install root of its own: no swap file, no ldconfig, nothing under the machine's /usr)
    and `SE_SRC` (a scratch checkout).
    """
    head = ["#!/bin/sh", "set -eu", "export DEBIAN_FRONTEND=noninteractive"]
    if options.source == "debian":
        return "\n".join([*head, *_apt_install(DEBIAN_PACKAGES), ""])
    tag, commit = options.upstream_tag, options.upstream_commit
    stamp = build_stamp(options)
    return "\n".join(
        [
            *head,
            'DESTDIR="${DESTDIR:-}"',
            f'SE_SRC="${{SE_SRC:-{SRC_DIR}}}"',
            # Run again (another boot of the instance, a lab machine with the build in its
            # image), the script finds its own stamp and stops: nothing to fetch or build.
            f'BUILT="$DESTDIR{BUILD_STAMP}"',
            f'if [ "$(cat "$BUILT" 2>/dev/null)" = "{stamp}" ]; then',
            f'  echo "SoftEther {tag} ({commit[:8]}, these flags) is installed: nothing to build"',
            "  exit 0",
            "fi",
            *_apt_install(BUILD_PACKAGES),
            # The smallest sizes (512 MB) run out of memory compiling Cedar without swap.
            "if [ -z \"$DESTDIR\" ] && [ \"$(awk '/MemTotal/ {print $2}' /proc/meminfo)\" -lt 2000000 ] && [ ! -e /swapfile ]; then",
            "  fallocate -l 1G /swapfile && chmod 600 /swapfile && mkswap /swapfile && swapon /swapfile",
            "fi",
            'rm -rf "$SE_SRC"',
            f'git clone --depth 1 --branch {tag} {UPSTREAM_REPO} "$SE_SRC"',
            'cd "$SE_SRC"',
            "head=$(git rev-parse HEAD)",
            f'if [ "$head" != "{commit}" ]; then',
            f'  echo "SoftEther {tag}: checked out $head, expected the pinned {commit}" >&2',
            "  exit 1",
            "fi",
            # liboqs's full history alone is ~145 MB; the pinned commits are all the build needs.
            "git submodule update --init --recursive --depth 1",
            f"CMAKE_FLAGS='{' '.join(CMAKE_FLAGS)}' ./configure",
            'make -C build -j"$(nproc)"',
            'make -C build install DESTDIR="$DESTDIR"',
            'if [ -z "$DESTDIR" ]; then ldconfig; fi',
            'mkdir -p "${BUILT%/*}"',
            f'echo "{stamp}" > "$BUILT"',
            "",
        ]
    )


def systemd_unit(options: SoftEtherOptions) -> str:
    """The project's own unit for the bridge; it shadows a packaged unit of the same name.

    The state and log directories are the ones the upstream build is configured with
    (CMAKE_FLAGS); systemd creates them, Debian's package creates its own."""
    binary = BRIDGE_BINARY[options.source]
    return "\n".join(
        [
            "[Unit]",
            "Description=SoftEther VPN Bridge (hybrid-cloud)",
            "After=network-online.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=forking",
            "RuntimeDirectory=softether",
            "StateDirectory=softether",
            "LogsDirectory=softether",
            f"ExecStart={binary} start",
            f"ExecStop={binary} stop",
            "Restart=on-failure",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )


def failover_unit() -> str:
    """The failover controller's unit: it runs for as long as the VM does (Restart=always,
    no start limit: it also waits out a package that is not there yet)."""
    return "\n".join(
        [
            "[Unit]",
            "Description=hybrid-cloud: failover of the bridge pair",
            "After=network-online.target softether-vpnbridge.service",
            "Wants=network-online.target",
            "StartLimitIntervalSec=0",
            "",
            "[Service]",
            f"Environment=PYTHONPATH={FAILOVER_LIB}",
            f"ExecStart=/usr/bin/python3 -m {FAILOVER_MODULE} {FAILOVER_CONFIG}",
            "Restart=always",
            "RestartSec=2",
            "RuntimeDirectory=hybrid-failover",
            "RuntimeDirectoryPreserve=yes",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )


def failover_files(config_json: str) -> list[dict[str, str]]:
    """write_files entries of the failover controller: its config and its unit. (Its package
    comes with the SoftEther converge, `softether.derive.failover_package`: it would make the
    user data larger than EC2's 16 KB, and new code would replace the VM.)"""
    return [
        {"path": FAILOVER_CONFIG, "permissions": "0644", "content": config_json + "\n"},
        {"path": f"/etc/systemd/system/{FAILOVER_UNIT}", "permissions": "0644", "content": failover_unit()},
    ]


def bridge_cloud_config(
    options: SoftEtherOptions,
    host_key: HostKey,
    authorized_keys: list[str],
    image: str,
    ruleset: str,
    failover: str | None = None,
) -> str:
    """The `#cloud-config` document of a bridge VM of `image` (`topology.clouds.bridge_image`).

    The host key generated by the program replaces every key the image would generate, so
    the first SSH connection already checks it. Root accepts the operator's key only (the
    converge writes systemd units and routes); passwords are off. The image is written down
    on the VM: another architecture is another user data, so the VM is replaced (an EC2
    instance cannot change its architecture in place). `ruleset`: the VM's own filter
    (components.firewall.bridge_ruleset), loaded by Debian's nftables.service before
    anything is installed, and at every boot before the network. `failover`: the config
    (JSON) of the failover controller of a bridge of a pair, started once SoftEther runs.
    """
    start_failover = f" && systemctl enable --now {FAILOVER_UNIT}" if failover is not None else ""
    doc = {
        "ssh_deletekeys": True,
        # Unused while `ssh_keys` is given (cloud-init then writes those and generates none);
        # should it ever run, only the pinned type, so a mismatch fails at the host-key check.
        # The schema refuses an empty list.
        "ssh_genkeytypes": ["ed25519"],
        "ssh_keys": {
            "ed25519_private": host_key.private_openssh,
            "ed25519_public": host_key.public_openssh.strip(),
        },
        "disable_root": False,
        "ssh_pwauth": False,
        "ssh_authorized_keys": [k.strip() for k in authorized_keys],
        "package_update": True,
        "write_files": [
            {"path": IMAGE_FILE, "permissions": "0644", "content": f"{image}\n"},
            {"path": INSTALL_SCRIPT, "permissions": "0755", "content": install_script(options)},
            {"path": f"/etc/systemd/system/{UNIT}", "permissions": "0644", "content": systemd_unit(options)},
            {"path": RULESET_FILE, "permissions": "0644", "content": ruleset},
            *(failover_files(failover) if failover is not None else []),
        ],
        # sshd stays closed until SoftEther is installed and running, so the converge's SSH
        # retries cover the install; it opens even if the install failed, for debugging.
        # (first boot only: a runtime mask is gone after a reboot, and runcmd runs once).
        "bootcmd": [["cloud-init-per", "once", "hybrid-ssh-closed", "systemctl", "mask", "--runtime", SSHD]],
        "runcmd": [
            ["systemctl", "enable", "--now", "nftables.service"],
            [
                "sh",
                "-c",
                f"{INSTALL_SCRIPT} && systemctl daemon-reload && systemctl enable {UNIT}"
                f" && systemctl restart {UNIT}{start_failover}; systemctl unmask --runtime {SSHD};"
                f" systemctl start {SSHD}",
            ]
        ],
    }
    return cloud_config_text(doc)


def cloud_config_text(doc: dict[str, Any]) -> str:
    """`doc` as a `#cloud-config` document (multi-line strings as literal blocks, key order kept).

    `cloud_config_text(yaml.safe_load(text)) == text` for every document made here.
    """
    return "#cloud-config\n" + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1000)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (keys, scripts, units) as literal blocks, readable on the VM."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
