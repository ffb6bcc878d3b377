"""Test helpers that reach behind the artifact store: the stored file, and tampering with it."""

from __future__ import annotations

from pathlib import Path

from goldrl_dagster.lib.storage.artifacts import ArtifactStore, StoredArtifact


def stored_file(store: ArtifactStore, artifact: StoredArtifact) -> Path:
    """The local file an artifact is stored in (local roots), without verifying it."""
    assert store.is_local, f"{store!r} is remote: its artifacts are objects, not local files"
    return Path(store.location(artifact))


def overwrite_stored_artifact(store: ArtifactStore, artifact: StoredArtifact, data: bytes) -> None:
    """Replace an artifact's stored bytes behind the store's back (a local file or an object)."""
    if store.is_local:
        stored_file(store, artifact).write_bytes(data)
    else:
        store.filesystem.pipe_file(store.location(artifact), data)
