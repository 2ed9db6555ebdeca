"""The fleet: versioned deployments in a deployment store, and the replicas that follow it.

A **version** is an immutable bundle — ``muse.yaml`` and every file it names — stored
content-addressed in a **deployment store** (a folder, or any fsspec URL). ``muse publish``
adds one; ``muse promote`` / ``muse rollback`` move which one is active; every replica
follows the store (ARCHITECTURE: the fleet).
"""

from muse.fleet.bundle import bundle_files
from muse.fleet.publish import publish
from muse.fleet.store import (
    DeploymentStore,
    StoreError,
    VersionRecord,
    version_id,
)

__all__ = [
    "DeploymentStore",
    "StoreError",
    "VersionRecord",
    "bundle_files",
    "publish",
    "version_id",
]
