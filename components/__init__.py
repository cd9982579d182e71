"""Pulumi components, one per real thing: home LAN, each cloud's network and bridge (`aws`,
`azure`), the database, the app, the budgets.

`program.build(stack)` wires them from the topology; `offline.run_program` runs it under
Pulumi's mocks (`hybrid plan`).
"""
