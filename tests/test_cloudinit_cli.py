"""`hybrid cloud-init`: a bridge's user data as the VM receives it, judged by the real cloud-init.

Every bridge of every stack file, both SoftEther sources, through Debian 12's own
`cloud-init schema --config-file` (package `cloud-init`, packages.apt).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cli.main import main
from components.cloudinit import cloud_config_text
from components.offline import ProgramRun, Record, plain, run_program
from topology import read_stack_file, stack_file

ROOT = Path(__file__).resolve().parents[1]
STACKS = sorted([*(ROOT / "stacks").glob("Pulumi.*.yaml"), *(ROOT / "tests" / "stacks").glob("Pulumi.*.yaml")])
SOURCES = ("upstream", "debian")
KEY = "tls:index/privateKey:PrivateKey"
CLOUD_INIT = shutil.which("cloud-init")


def _with_source(path: Path, source: str, tmp_path: Path) -> Path:
    doc = yaml.safe_load(path.read_text())
    doc["config"]["hybrid-cloud:network"].setdefault("softether", {})["source"] = source
    out = tmp_path / path.name
    out.write_text(yaml.safe_dump(doc))
    return out


def _cloud_init(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["cloud-init", *args]) == 0
    return capsys.readouterr().out


def _schema(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert CLOUD_INIT, "cloud-init is not installed (packages.apt)"
    path = tmp_path / "user-data"
    path.write_text(text)
    return subprocess.run(
        [CLOUD_INIT, "schema", "--config-file", str(path)], capture_output=True, text=True, timeout=120
    )


def _sites(path: Path) -> list[str]:
    return [s["name"] for s in read_stack_file(path)["hybrid-cloud:network"]["sites"]]


CASES = [(p, site, source) for p in STACKS for site in _sites(p) for source in SOURCES]


@pytest.mark.parametrize(
    ("path", "site", "source"), CASES, ids=[f"{p.stem.removeprefix('Pulumi.')}-{s}-{src}" for p, s, src in CASES]
)
def test_cloudinit_schema_accepts_every_bridges_user_data(
    path: Path, site: str, source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _cloud_init([str(_with_source(path, source, tmp_path)), "--site", site, "--show-secrets"], capsys)
    run = _schema(text, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Valid cloud-config" in run.stdout
    assert "deprecat" not in (run.stdout + run.stderr).lower()


@pytest.fixture(scope="module")
def dev_run() -> ProgramRun:
    return run_program("dev")


@pytest.fixture
def same_run(dev_run: ProgramRun, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI prints from `dev_run` itself: an OpenSSH private key carries random check
    bytes, so two runs of the program differ there."""
    monkeypatch.setattr("components.offline.run_program", lambda ref: dev_run)


def _received(run: ProgramRun, site: str) -> str:
    """What the VM's cloud-init reads: EC2 userData as is, Azure customData base64-decoded."""
    if run.stack.network.site(site).cloud == "aws":
        return plain(run.one("aws:ec2/instance:Instance", f"{site}-bridge-vm").inputs["userData"])
    custom = plain(run.one("azure-native:compute:VirtualMachine", f"{site}-bridge-vm").inputs["osProfile"])["customData"]
    return base64.b64decode(custom).decode()


@pytest.mark.parametrize("site", ["Hybrid-VPC", "Hybrid-VNet"])
def test_cloudinit_cli_prints_exactly_what_the_vm_receives(
    dev_run: ProgramRun, site: str, capsys: pytest.CaptureFixture[str], same_run: None
) -> None:
    assert _cloud_init(["--stack", "dev", "--site", site, "--show-secrets"], capsys) == _received(dev_run, site)


def _private_block(text: str, key: Record) -> tuple[str, str]:
    """(the private key's literal block in `text`, its placeholder as the CLI prints it)."""
    private = key.outputs["privateKeyOpenssh"]
    block = "ed25519_private: |\n" + "".join(f"    {line}\n" for line in private.splitlines())
    assert block in text
    return block, f"ed25519_private: '<secret: {KEY} {key.name} privateKeyOpenssh>'\n"


@pytest.mark.parametrize("site", ["Hybrid-VPC", "Hybrid-VNet"])
def test_cloudinit_cli_hides_secrets_unless_asked(
    dev_run: ProgramRun, site: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], same_run: None
) -> None:
    text = _cloud_init(["--stack", "dev", "--site", site], capsys)
    private = dev_run.one(KEY, f"secrets-{site}-host-key").outputs["privateKeyOpenssh"]
    assert "PRIVATE KEY" not in text and private.splitlines()[1] not in text
    doc = yaml.safe_load(text)
    assert doc["ssh_keys"]["ed25519_private"] == f"<secret: {KEY} secrets-{site}-host-key privateKeyOpenssh>"
    # Everything else is the document the VM receives, byte for byte: re-rendering a loaded
    # document gives it back unchanged.
    received = _received(dev_run, site)
    assert cloud_config_text(yaml.safe_load(received)) == received
    assert text == received.replace(*_private_block(received, dev_run.one(KEY, f"secrets-{site}-host-key")))
    full = yaml.safe_load(received)
    assert {k: v for k, v in doc.items() if k != "ssh_keys"} == {k: v for k, v in full.items() if k != "ssh_keys"}
    assert doc["ssh_keys"]["ed25519_public"] == full["ssh_keys"]["ed25519_public"]
    assert _schema(text, tmp_path).returncode == 0


def test_cloudinit_upstream_pins_the_host_key_and_keeps_sshd_closed_until_installed(
    dev_run: ProgramRun, capsys: pytest.CaptureFixture[str], same_run: None
) -> None:
    doc = yaml.safe_load(_cloud_init(["--stack", "dev", "--site", "Hybrid-VPC", "--show-secrets"], capsys))
    host = dev_run.one(KEY, "secrets-Hybrid-VPC-host-key").outputs
    # The pinned key replaces the image's keys; nothing else is generated.
    assert doc["ssh_deletekeys"] is True
    assert doc["ssh_keys"] == {
        "ed25519_private": host["privateKeyOpenssh"],
        "ed25519_public": host["publicKeyOpenssh"].strip(),
    }
    assert doc["ssh_genkeytypes"] == ["ed25519"]
    assert doc["bootcmd"] == [["cloud-init-per", "once", "hybrid-ssh-closed", "systemctl", "mask", "--runtime", "ssh.service"]]
    (line,) = [c[2] for c in doc["runcmd"] if c[0] == "sh"]
    assert line.index("hybrid-install-softether") < line.index("systemctl unmask --runtime ssh.service")
    assert line.index("systemctl unmask --runtime ssh.service") < line.index("systemctl start ssh.service")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stack", "dev", "--site", "Nowhere"], "--site: Nowhere is not a cloud site of dev (sites: Hybrid-VPC, Hybrid-VNet)"),
        (["--stack", "dev", "--site", "home"], "--site: home is not a cloud site of dev (sites: Hybrid-VPC, Hybrid-VNet)"),
    ],
)
def test_cloudinit_cli_unknown_site_is_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cloud-init", *args]) == 2
    out = capsys.readouterr()
    assert out.err == f"{stack_file('dev')}: {message}\n"
    assert out.out == ""
