"""Security policies of a hybrid-cloud stack (pulumi_policy): network (security.py) and
PaaS (paas.py); `evaluate` runs them offline over what the Pulumi mocks recorded."""

from . import paas, security
from .security import Resource, Violation, evaluate

POLICIES = (*security.POLICIES, *paas.POLICIES)

__all__ = ["POLICIES", "Resource", "Violation", "evaluate"]
