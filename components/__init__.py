"""Pulumi components for ephemeral self-hosted GitHub Actions runners in Docker.

Importing this package only defines classes (dynamic providers are pickled by reference to
these modules and re-imported in the provider process).
"""

from .config import ConfigError, FleetConfig, parse_config, pool_spec
from .credentials import GitHubCredentials, GitHubCredentialsArgs
from .fleet import Fleet, FleetArgs
from .image import RunnerImage, RunnerImageArgs
from .pool import RunnerPool, RunnerPoolArgs
from .registration import RunnerRegistration, RunnerRegistrationArgs, RunnerRegistrationProvider
from .scaleset import RunnerScaleSet, RunnerScaleSetArgs, RunnerScaleSetProvider

__all__ = [
    "ConfigError", "Fleet", "FleetArgs", "FleetConfig", "GitHubCredentials", "GitHubCredentialsArgs",
    "RunnerImage", "RunnerImageArgs", "RunnerPool", "RunnerPoolArgs", "RunnerRegistration",
    "RunnerRegistrationArgs", "RunnerRegistrationProvider", "RunnerScaleSet", "RunnerScaleSetArgs",
    "RunnerScaleSetProvider", "parse_config", "pool_spec",
]
