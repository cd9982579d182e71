"""The stack's whole network on one Linux machine, configured exactly as in the cloud.

`hybrid lab up|status|test|down` (cli/lab.py). One network namespace per machine of the
reference network (layout.py, derived from the topology and its routing plan); real SoftEther
Server/Bridge instances with sshd (node.py), converged over SSH with pinned host keys by
`softether` from the specs `softether.derive` makes (up.py); MariaDB and WordPress standing in
for RDS and App Service (paas.py); the blog's checks (checks.py); faults for tests and
benchmarks (faults.py); teardown from the lab's own record (state.py, down.py). Every command
works through the lab handle (lab.py: `open_lab`, `specs`, `session`) and one process and
namespace toolkit (proc.py).

Debian 12's SoftEther has an OpenSSL-3 error-queue defect (see node.py): the lab preloads a
small compatibility library into its SoftEther processes, so restarts and faults heal by
themselves; `softether.session` still checks that a changed cascade carries traffic.

Nothing is ever configured in the root namespace; the lab's "internet" is 198.51.100.0/24.
"""
