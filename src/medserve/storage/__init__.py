"""Model registry: versioned model artifacts with their metadata (schema, metrics, lineage)."""

from medserve.storage.artifacts import ArtifactRef, read_artifact, write_artifact
from medserve.storage.registry import ModelVersion, Registry

__all__ = ["ArtifactRef", "ModelVersion", "Registry", "read_artifact", "write_artifact"]
