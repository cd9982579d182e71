"""The failover controller of a bridge pair (one per bridge VM, and the same code in the lab).

Standard library only: on a bridge it runs under Debian 12's python3 with nothing installed
(`python3 -m softether.failover /etc/hybrid-cloud/failover.json`, unit
`hybrid-failover.service`). Modules: `config` (the JSON, validated), `controller` (probe
rounds, heartbeat, the decision, the takeover actions, the state file), `drivers` (the cloud
route's next hop: AWS, Azure, lab), `status` (the state file for `hybrid status`).
"""
