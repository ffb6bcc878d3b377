"""Content-addressed artifact store: files are named by their sha256 and verified on load.

The default backend is a local folder (``GOLDRL_ARTIFACT_ROOT``, default
``$GOLDRL_HOME/artifacts``). Writes go to a temporary file that is renamed into place, so a
crash never leaves a partial artifact under a valid name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20


class ArtifactIntegrityError(RuntimeError):
    """Raised when an artifact's bytes no longer match the checksum it is stored under."""


@dataclass(frozen=True)
class StoredArtifact:
    """Where an artifact lives and what it must hash to."""

    sha256: str
    uri: str
    size_bytes: int


def sha256_file(path: Path) -> str:
    """Return the lower-case hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ArtifactStore:
    """A local-folder content-addressed store.

    Args:
        root: Folder holding the artifacts (created on first write).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str, suffix: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def put_bytes(self, data: bytes, suffix: str) -> StoredArtifact:
        """Store bytes under their checksum.

        Args:
            data: The content.
            suffix: File suffix that tells the content type, e.g. ``.parquet`` or ``.zip``.

        Returns:
            The stored artifact's checksum, URI and size.
        """
        sha = hashlib.sha256(data).hexdigest()
        path = self._path(sha, suffix)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return StoredArtifact(sha256=sha, uri=path.as_uri(), size_bytes=len(data))

    def put_file(self, source: Path, suffix: str | None = None) -> StoredArtifact:
        """Store a file's content under its checksum (the source file is left in place).

        Args:
            source: File to store.
            suffix: Suffix of the stored file; defaults to the source's suffix.

        Returns:
            The stored artifact's checksum, URI and size.
        """
        return self.put_bytes(source.read_bytes(), suffix if suffix is not None else source.suffix)

    def path_for(self, artifact: StoredArtifact) -> Path:
        """Return the verified local path of an artifact.

        Raises:
            FileNotFoundError: If the artifact is missing from the store.
            ArtifactIntegrityError: If its bytes do not hash to its recorded checksum.
        """
        path = Path(artifact.uri.removeprefix("file://"))
        if not path.exists():
            raise FileNotFoundError(f"artifact {artifact.sha256} is missing at {path}")
        actual = sha256_file(path)
        if actual != artifact.sha256:
            raise ArtifactIntegrityError(
                f"artifact at {path} hashes to {actual}, expected {artifact.sha256}: "
                "the file was modified or corrupted; rebuild it from its asset"
            )
        return path

    def get_bytes(self, artifact: StoredArtifact) -> bytes:
        """Load an artifact's bytes, verifying the checksum first."""
        data = self.path_for(artifact).read_bytes()
        # Hash the bytes actually returned so a change between check and read is caught too.
        if hashlib.sha256(data).hexdigest() != artifact.sha256:
            raise ArtifactIntegrityError(f"artifact {artifact.sha256} changed while being read")
        return data
