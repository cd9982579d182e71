"""The Pulumi program: stack config -> topology -> routing plan -> components -> exports.

Everything is in `components.program.build` (also run in-process under mocks by the tests and
`hybrid plan`); the PaaS and budget components are wired in its `build_paas`.
"""

import pulumi

from components.program import build, stack_from_config

for key, value in build(stack_from_config()).items():
    pulumi.export(key, value)
