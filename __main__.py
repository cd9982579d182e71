"""The Pulumi program: stack config -> topology -> routing plan -> components -> exports.

All of it is `components.program` (also run in-process under mocks by the tests and
`hybrid plan`); the PaaS and budget components are wired in its `build_paas`.
"""

from components.program import run

run()
