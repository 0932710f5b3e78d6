"""Per-pool, per-host manager of ephemeral GitHub Actions runner containers.

    python -m pool_manager --spec pool.json [--credentials-file creds.json]

`load_spec` (pure, no Docker or network) validates a pool spec and is reused by the Pulumi
components at preview time.
"""

from .spec import ContainerSpec, GpuSpec, PoolSpec, SpecError, VolumeSpec, load_spec, parse_size

__all__ = ["ContainerSpec", "GpuSpec", "PoolSpec", "SpecError", "VolumeSpec", "load_spec", "parse_size"]
