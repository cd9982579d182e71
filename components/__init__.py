"""Pulumi components, one per real thing: home LAN, Hybrid-VPC, Hybrid VNet, the bridge VMs.

`program.build(stack)` wires them from the topology; `testing.run_program` runs it under mocks.
"""
