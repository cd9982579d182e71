"""Capture vpncmd /CSV outputs from the real Debian build into tests/softether/fixtures/.

Run by hand as root: `python -m tests.softether.capture_fixtures`. Each fixture is a pair:
`<name>.script` (the /IN lines, masked) and `<name>.out` (vpncmd's stdout, verbatim). The
passwords are this script's fixed fake ones, so the outputs can be committed.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from lab.node import Testbed
from softether import vpncmd as v
from softether.facts import read_commands
from softether.session import Session

from .helpers import error_script, reference_specs

HERE = Path(__file__).parent / "fixtures"


def save(name: str, session: Session, commands: list[v.Command]) -> None:
    lines, res = session.runner.run_script(commands, 20)
    (HERE / f"{name}.script").write_text("\n".join(v.script(commands, masked=True)) + "\n")
    (HERE / f"{name}.out").write_text(res.stdout)
    print(f"{name}: {len(lines)} lines, rc {res.rc}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hc-capture-") as tmp:
        bed = Testbed(Path(tmp)).start()
        try:
            home = bed.add("home", "server", "198.51.100.1/24", lan_device="eth1")
            aws = bed.add("aws", "bridge", "198.51.100.2/24")
            specs = reference_specs(home.host, aws.restart_command)
            server = Session(bed.transport(home), specs.server)
            save("server_fresh_read", server, read_commands(specs.server))
            server.converge()
            save("server_converged_read", server, read_commands(specs.server))
            bridge = Session(bed.transport(aws), specs.bridges["Hybrid-VPC"])
            save("bridge_fresh_read", bridge, read_commands(bridge.spec))
            bridge.converge()
            time.sleep(1)
            save("bridge_converged_read", bridge, read_commands(bridge.spec))
            errors = error_script(specs)
            save("server_apply_errors", server, errors)
        finally:
            bed.stop()


if __name__ == "__main__":
    main()
