"""Resource options that decide how `pulumi up` replaces a resource (cloud audit #4, #5).

Recorded by a stack transformation under the mocks (tests/components/options.py): the options
the SDK sends to the engine with each registration.
"""

from __future__ import annotations

import pulumi

from components.offline import ProgramRun

Options = dict[tuple[str, str], pulumi.ResourceOptions]
Recorded = tuple[ProgramRun, Options]  # the `with_options` fixture of conftest.py


INSTANCE = "aws:ec2/instance:Instance"
VM = "azure-native:compute:VirtualMachine"


def _bridges(run: ProgramRun, cloud: str) -> list[str]:
    return [f"{s.name}-bridge-vm" for s in run.stack.network.sites if s.cloud == cloud]


def _opts(options: Options, type_: str, name: str) -> pulumi.ResourceOptions:
    assert (type_, name) in options, sorted(options)
    return options[(type_, name)]


def test_ec2_bridge_is_deleted_before_its_replacement(with_options: Recorded) -> None:
    # Its primary ENI is a separate resource that survives the replacement: the new instance
    # can only attach it once the old one is gone (InvalidNetworkInterface.InUse otherwise).
    run, options = with_options
    for name in _bridges(run, "aws"):
        opts = _opts(options, INSTANCE, name)
        assert opts.delete_before_replace is True
        assert run.one(INSTANCE, name).input("userDataReplaceOnChange") is True


def test_azure_bridge_is_replaced_when_custom_data_or_image_changes(
    with_options: Recorded,
) -> None:
    # Azure refuses to change either on an existing VM (PropertyChangeNotAllowed).
    run, options = with_options
    names = _bridges(run, "azure")
    assert names
    for name in names:
        opts = _opts(options, VM, name)
        assert set(opts.replace_on_changes or []) == {"osProfile.customData", "storageProfile.imageReference"}
        assert opts.delete_before_replace is True


def test_azure_bridge_vm_detaches_its_managed_nic_on_delete(with_options: Recorded) -> None:
    # The NIC is a Pulumi resource that outlives the VM it is replaced with; `Delete` would
    # make Azure delete it together with the old VM.
    run, _ = with_options
    for name in _bridges(run, "azure"):
        (nic,) = run.one(VM, name).input("networkProfile")["networkInterfaces"]
        assert nic["deleteOption"] == "Detach"


def test_resource_options_recorder_sees_every_custom_resource(with_options: Recorded) -> None:
    run, options = with_options
    assert {(r.type, r.name) for r in run.records if r.custom} <= set(options)


def test_ec2_bridge_credit_mode_is_stated(with_options: Recorded) -> None:
    # Unlimited, AWS's default for t4g, set so the billed mode is the one `hybrid cost` prices.
    run, _ = with_options
    for name in _bridges(run, "aws"):
        assert run.one(INSTANCE, name).input("creditSpecification") == {"cpuCredits": "unlimited"}
