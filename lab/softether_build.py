"""The SoftEther a lab node runs: the release the stack's `network.softether` selects.

`upstream`: built by the very install script a bridge's cloud-init runs
(`components.cloudinit.install_script`), with `DESTDIR` set to an install root of the lab's
own, so nothing lands in the machine's /usr; a node bind-mounts that root's /usr/local over
/usr/local in its private mount namespace and starts `/usr/local/bin/vpnserver start` /
`vpnbridge start`, the unit's ExecStart. The root is cached by commit and by a hash of the
script's text (which holds the build flags): `$HYBRID_SOFTETHER_CACHE` (default
/var/cache/hybrid-cloud/softether) / `<commit>-<hash>`, so a second `make lab` (or another
checkout on the machine, or CI) does not rebuild.

The cache knows when it is broken: next to `root` each build keeps `manifest.json`, every
file it installed with its size and SHA-256 and every symlink with its target (taken from
what the build left, whatever the script installs), checked on every use (70 ms for the
27 MB build). A changed, missing or relinked file is one LabError line naming it; `release`
then rebuilds (`make softether`, `lab up`) and says why. A build from before manifests
existed gets its manifest at its first use.

Where there is no internet, `$HYBRID_SOFTETHER_MIRROR` names the offline mirror tar
(../shared/softether/README.md): it is unpacked to a scratch directory and git's URL rewrite
(`url.file://<dir>/.insteadOf https://github.com/`, through GIT_CONFIG_* variables) turns the
script's clone and submodule fetch into local ones; the script itself is unchanged.

`debian`: the machine's softether-* packages (packages.apt), with the OpenSSL-3 compatibility
library (lab/node.py says why); the upstream build never gets it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from components.cloudinit import install_script
from topology import SoftEtherOptions

from .proc import LabError, sh

CACHE_ENV = "HYBRID_SOFTETHER_CACHE"
MIRROR_ENV = "HYBRID_SOFTETHER_MIRROR"
DEFAULT_CACHE = Path("/var/cache/hybrid-cloud/softether")
BUILD_TIMEOUT_S = 3600.0
DEBIAN_PACKAGE = "softether-vpnserver"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Release:
    """What a node runs. `root`: the upstream install root (its usr/local goes over
    /usr/local in the node); None for Debian's packages."""

    source: Literal["upstream", "debian"]
    label: str  # "upstream 5.2.5188 10d6efcc" / "debian 5.01.9674"
    root: Path | None = None

    def to_record(self) -> dict[str, str]:
        return {"source": self.source, "label": self.label, "root": str(self.root or "")}

    @classmethod
    def from_record(cls, d: dict[str, str]) -> Release:
        source: Literal["upstream", "debian"] = "debian" if d["source"] == "debian" else "upstream"
        return cls(source, d["label"], Path(d["root"]) if d["root"] else None)


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def build_key(options: SoftEtherOptions) -> str:
    """`<commit>-<hash of the install script>`: a new commit or new flags, a new build."""
    digest = hashlib.sha256(install_script(options).encode()).hexdigest()[:12]
    return f"{options.upstream_commit}-{digest}"


def upstream_label(options: SoftEtherOptions) -> str:
    return f"upstream {options.upstream_tag} {options.upstream_commit[:8]}"


def debian_release() -> Release:
    """The installed Debian package's version, e.g. `debian 5.01.9674`."""
    out = sh("dpkg-query", "-W", "-f", "${Version}", DEBIAN_PACKAGE, check=False).strip()
    m = re.match(r"(?:\d+:)?([0-9.]+)", out)
    if not m:
        raise LabError(f"softether.source debian: package {DEBIAN_PACKAGE} is not installed")
    return Release("debian", f"debian {m.group(1)}")


def cached(options: SoftEtherOptions) -> Release | None:
    """The upstream build of `options` if it is in the cache (nothing is built); None if it
    is not, a LabError (one line) if it is there but broken."""
    target = cache_root() / build_key(options)
    root = target / "root"
    if not (root / "usr/local/bin/vpnserver").exists() and not (target / MANIFEST).exists():
        return None
    if not (target / MANIFEST).exists():
        with contextlib.suppress(OSError):  # a build from before manifests: record it now
            write_manifest(target)
    problem = check_manifest(target)
    if problem:
        raise LabError(f"SoftEther build in {target} is broken: {problem}")
    return Release("upstream", upstream_label(options), root)


def _walk(root: Path) -> dict[str, list[object]]:
    """Every file (size, SHA-256) and symlink (target) under `root`, by relative path."""
    out: dict[str, list[object]] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = ["link", os.readlink(p)]
        elif p.is_file():
            out[rel] = [p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()]
    return out


def write_manifest(target: Path) -> None:
    """Record what the build in `target`/root installed (atomically)."""
    tmp = target / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(_walk(target / "root"), indent=0) + "\n")
    tmp.replace(target / MANIFEST)


def check_manifest(target: Path) -> str | None:
    """The first way the build in `target` differs from its manifest (None: it matches)."""
    try:
        recorded = json.loads((target / MANIFEST).read_text())
        assert isinstance(recorded, dict)
    except (OSError, ValueError, AssertionError):
        return f"{MANIFEST} unreadable"
    have = _walk(target / "root")
    for rel, entry in recorded.items():
        if rel not in have:
            return f"{rel}: missing (and {sum(r not in have for r in recorded) - 1} more)"
        if have[rel] != entry:
            return f"{rel}: changed since the build ({_what(entry)} -> {_what(have[rel])})"
    return None


def _what(entry: list[object]) -> str:
    return f"link to {entry[1]}" if entry[0] == "link" else f"{entry[0]} bytes, sha256 {str(entry[1])[:12]}"


def cached_release(options: SoftEtherOptions) -> Release | None:
    """What `release` would give without building: None for an upstream build not made."""
    return debian_release() if options.source == "debian" else cached(options)


def release(
    options: SoftEtherOptions, say: Callable[[str], None] = print, build: bool = True
) -> Release:
    """The release `options` selects; an upstream build missing from the cache, or broken,
    is built (with `build`), else a LabError."""
    if options.source == "debian":
        return debian_release()
    try:
        got = cached(options)
    except LabError as e:
        if not build:
            raise
        say(f"{e}: rebuilding")
        got = None
    if got is not None:
        return got
    if not build:
        raise LabError(f"SoftEther {upstream_label(options)} is not built in {cache_root()}")
    target = cache_root() / build_key(options)
    try:
        with locked(cache_root() / f".{build_key(options)}.lock"):
            got = _usable(options)  # another process may have built it meanwhile
            if got is None:
                build_upstream(options, target, say)
                write_manifest(target)
                got = cached(options)
    except OSError as e:
        raise LabError(
            f"SoftEther cache {cache_root()}: cannot build there ({e.filename}: {e.strerror}); "
            f"set {CACHE_ENV} to a writable directory"
        ) from None
    if got is None:
        raise LabError(f"SoftEther build left no vpnserver in {target}")
    return got


def _usable(options: SoftEtherOptions) -> Release | None:
    try:
        return cached(options)
    except LabError:
        return None


def build_upstream(options: SoftEtherOptions, target: Path, say: Callable[[str], None]) -> None:
    """Run the install script into `target`/root (atomically: a scratch directory renamed at
    the end); its output goes to `target`/build.log."""
    tar = _mirror_tar()
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    scratch.chmod(0o755)  # mkdtemp's 0700; the cache is shared by the machine's checkouts
    try:
        script = scratch / "install-softether"
        script.write_text(install_script(options))
        env = {
            **os.environ,
            "DESTDIR": str(scratch / "root"),
            "SE_SRC": str(scratch / "src"),
            **(_mirror_env(tar, scratch) if tar else {}),
        }
        say(f"building SoftEther {upstream_label(options)} into {target} (log: build.log)")
        t0 = time.monotonic()
        with (scratch / "build.log").open("w") as log:
            try:
                res = subprocess.run(
                    ["sh", str(script)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=scratch,
                    timeout=BUILD_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise LabError(f"SoftEther build: not done within {BUILD_TIMEOUT_S:.0f} s") from None
        if res.returncode != 0:
            tail = (scratch / "build.log").read_text().strip().splitlines()[-5:]
            raise LabError(f"SoftEther build exited {res.returncode}: {' / '.join(tail)}")
        (scratch / "build-seconds").write_text(f"{time.monotonic() - t0:.1f}\n")
        shutil.rmtree(scratch / "src")
        shutil.rmtree(scratch / "mirror", ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _mirror_tar() -> str | None:
    tar = os.environ.get(MIRROR_ENV)
    if tar and not Path(tar).is_file():
        raise LabError(f"{MIRROR_ENV}: {tar} is not a file (the offline mirror tar)")
    return tar or None


def _mirror_env(tar: str, scratch: Path) -> dict[str, str]:
    """GIT_CONFIG_* that send https://github.com/ to the mirror `tar`, unpacked in `scratch`."""
    mirror = scratch / "mirror"
    mirror.mkdir()
    sh("tar", "-C", str(mirror), "-xf", tar, timeout=120)
    return {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": f"url.file://{mirror}/.insteadOf",
        "GIT_CONFIG_VALUE_0": "https://github.com/",
        "GIT_CONFIG_KEY_1": "protocol.file.allow",
        "GIT_CONFIG_VALUE_1": "always",
    }


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One builder per key on this machine; the others wait for its result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    """`python -m lab.softether_build --stack dev`: build (or find) the stack's release."""
    import argparse

    from topology import load_stack

    ap = argparse.ArgumentParser(description="Build the SoftEther release a stack selects.")
    ap.add_argument("--stack", default="dev")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        got = release(load_stack(args.stack).network.softether)
    except LabError as e:
        print(f"error: {e}")
        return 1
    where = f" in {got.root}" if got.root else ""
    print(f"SoftEther {got.label}{where} ({time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
