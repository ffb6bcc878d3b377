"""Content-addressed artifact store: files are named by their sha256 and verified on load.

The root (``GOLDRL_ARTIFACT_ROOT``, default ``$GOLDRL_HOME/artifacts``) is a local folder or any
fsspec URL (``s3://bucket/prefix``, ``gs://…``, ``memory://…``). An artifact lives at
``<root>/<sha[:2]>/<sha><suffix>``; its URI (a ``file://`` URI for a local root, the fsspec URL
otherwise) is what the ``artifacts`` table records.

- Every load hashes the bytes it returns; a mismatch is :class:`ArtifactIntegrityError`.
- Writes are atomic: a local temporary file renamed into place, a single PUT on object stores
  (which never show a partial object). Storing bytes whose name already holds other bytes (a
  tampered or truncated artifact) replaces them, so re-materializing an asset repairs it.
- A URI read back from the database must lie under the root, else
  :class:`ArtifactLocationError`: a row can never make goldrl read ``/etc/passwd`` or another
  bucket.
- Code that needs a real file (SB3 policy bundles) calls :meth:`ArtifactStore.local_path`: the
  stored file for a local root, a verified copy in a cache folder keyed by sha256 otherwise.

fsspec (and s3fs) are imported only when the root is remote.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

_CHUNK = 1 << 20
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# Object stores have no folders and show an object only once its upload completed.
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci"})
_log = logging.getLogger(__name__)


class ArtifactIntegrityError(RuntimeError):
    """Raised when an artifact's bytes no longer match the checksum it is stored under."""


class ArtifactLocationError(ArtifactIntegrityError):
    """Raised when an artifact URI (e.g. read from the database) lies outside the store's root."""


@dataclass(frozen=True)
class StoredArtifact:
    """Where an artifact lives and what it must hash to."""

    sha256: str
    uri: str
    size_bytes: int


def sha256_file(path: Path) -> str:
    """Return the lower-case hex sha256 of a file's bytes."""
    with path.open("rb") as fh:
        return _sha256_stream(fh)


def _sha256_stream(fh: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := fh.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def url_scheme(text: str) -> str | None:
    """Return the lower-case scheme of ``text`` when it is a ``scheme://…`` URL, else None."""
    match = _SCHEME_RE.match(text)
    return match.group(1).lower() if match else None


def path_from_file_uri(uri: str) -> Path:
    """Decode a ``file://`` URI (as written by :meth:`pathlib.Path.as_uri`) into a path.

    Percent-escapes are decoded, so a home with a space, ``%``, ``#`` or non-ASCII letters
    round-trips.

    Raises:
        ValueError: If ``uri`` is not a local ``file://`` URI of an absolute path.
    """
    parts = urlsplit(uri)
    if (
        parts.scheme.lower() != "file"
        or parts.netloc not in ("", "localhost")
        or parts.query
        or parts.fragment
        or not parts.path.startswith("/")
    ):
        raise ValueError(f"{uri!r} is not a file:// URI of an absolute local path")
    return Path(url2pathname(parts.path))


class ArtifactStore:
    """A content-addressed store in a local folder or under any fsspec URL.

    Args:
        root: Local folder, ``file://`` URI, or fsspec URL such as ``s3://bucket/prefix``.
        storage_options: fsspec options of a remote root (credentials, ``endpoint_url``…);
            never logged. Unset options come from the backend's usual sources (AWS env vars).
        cache_dir: Folder of verified local copies of remote artifacts (:meth:`local_path`);
            defaults to ``goldrl-artifact-cache`` in the temporary folder.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        text = str(root)
        scheme = None if isinstance(root, Path) else url_scheme(text)
        self.local_root: Path | None = None
        self._fs: AbstractFileSystem | None = None
        self._fs_root = ""
        if scheme is None or scheme == "file":
            local = path_from_file_uri(text) if scheme == "file" else Path(text)
            self.local_root = Path(os.path.abspath(local.expanduser()))
            self.root = str(self.local_root)
            self._resolved_root = self.local_root.resolve()
        else:
            from fsspec.core import url_to_fs

            fs, path = url_to_fs(text, **dict(storage_options or {}))
            self._fs, self._fs_root = fs, path.rstrip("/")
            self.root = text.rstrip("/")
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "goldrl-artifact-cache"

    @property
    def is_local(self) -> bool:
        """True when the root is a local folder (artifacts are files :meth:`path_for` returns)."""
        return self.local_root is not None

    @property
    def filesystem(self) -> AbstractFileSystem:
        """The fsspec filesystem of a remote root.

        Raises:
            ValueError: If the root is a local folder.
        """
        return self._remote_fs()

    def __repr__(self) -> str:  # storage options may hold keys: never shown
        return f"ArtifactStore({self.root!r})"

    # ----------------------------------------------------------------------------- writing

    def put_bytes(self, data: bytes, suffix: str) -> StoredArtifact:
        """Store bytes under their checksum.

        An existing artifact of that name is kept when it hashes right and replaced
        (atomically, with a warning) when it does not, so storing again repairs it.

        Args:
            data: The content.
            suffix: File suffix that tells the content type, e.g. ``.parquet`` or ``.zip``.

        Returns:
            The stored artifact's checksum, URI and size.
        """
        sha = hashlib.sha256(data).hexdigest()
        name = f"{sha[:2]}/{sha}{suffix}"
        if self.local_root is not None:
            path = self.local_root / name
            if self._needs_write(sha, path.as_uri(), path.exists, lambda: sha256_file(path)):
                _write_local_atomic(path, data)
            return StoredArtifact(sha256=sha, uri=path.as_uri(), size_bytes=len(data))
        fs = self._remote_fs()
        path = f"{self._fs_root}/{name}"
        uri = fs.unstrip_protocol(path)
        if self._needs_write(sha, uri, lambda: fs.exists(path), lambda: self._hash_remote(path)):
            self._write_remote(path, data)
        return StoredArtifact(sha256=sha, uri=uri, size_bytes=len(data))

    def put_file(self, source: Path, suffix: str | None = None) -> StoredArtifact:
        """Store a file's content under its checksum (the source file is left in place).

        Args:
            source: File to store.
            suffix: Suffix of the stored file; defaults to the source's suffix.

        Returns:
            The stored artifact's checksum, URI and size.
        """
        return self.put_bytes(source.read_bytes(), suffix if suffix is not None else source.suffix)

    @staticmethod
    def _needs_write(sha: str, where: str, exists: Any, actual_hash: Any) -> bool:
        if not exists():
            return True
        try:
            actual = actual_hash()
        except FileNotFoundError:  # removed between the two calls
            return True
        if actual == sha:
            return False
        _log.warning(
            "artifact at %s hashes to %s, expected %s: replacing it with the correct bytes",
            where, actual, sha,
        )  # fmt: skip
        return True

    def _write_remote(self, path: str, data: bytes) -> None:
        fs = self._remote_fs()
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        if protocols & _OBJECT_STORES:
            fs.pipe_file(path, data)  # one PUT (or multipart upload): atomic
            return
        parent = path.rsplit("/", 1)[0]
        fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        fs.pipe_file(tmp, data)
        try:
            fs.mv(tmp, path)
        except BaseException:
            fs.rm(tmp)
            raise

    # ----------------------------------------------------------------------------- locating

    def location(self, artifact: StoredArtifact) -> str:
        """Return where an artifact lives (a local path, or an fsspec URL), after checking it.

        The file is neither read nor verified; use the load methods for that.

        Raises:
            ArtifactLocationError: If the URI is malformed or lies outside the store's root.
        """
        if self.local_root is not None:
            return str(self._local_location(artifact))
        return self._remote_fs().unstrip_protocol(self._remote_location(artifact))

    def _refuse(self, artifact: StoredArtifact, why: str) -> ArtifactLocationError:
        return ArtifactLocationError(
            f"artifact {artifact.sha256} has URI {artifact.uri!r}, {why} the artifact root "
            f"{self.root!r}: refusing to read it (if the store moved, update the artifacts rows)"
        )

    def _local_location(self, artifact: StoredArtifact) -> Path:
        try:
            path = path_from_file_uri(artifact.uri)
        except ValueError:
            raise self._refuse(artifact, "which is not a file:// URI under") from None
        resolved = path.resolve()
        if resolved == self._resolved_root or not resolved.is_relative_to(self._resolved_root):
            raise self._refuse(artifact, "which is outside")
        return resolved

    def _remote_location(self, artifact: StoredArtifact) -> str:
        from fsspec.core import split_protocol

        fs = self._remote_fs()
        protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
        protocol, _ = split_protocol(artifact.uri)
        if protocol not in protocols:
            raise self._refuse(artifact, "which is not a URL under")
        path = fs._strip_protocol(artifact.uri).rstrip("/")
        prefix = f"{self._fs_root}/"
        relative = path[len(prefix) :].split("/") if path.startswith(prefix) else []
        if not relative or any(part in ("", ".", "..") for part in relative):
            raise self._refuse(artifact, "which is outside")
        return path

    def _remote_fs(self) -> AbstractFileSystem:
        if self._fs is None:
            raise ValueError(f"artifact root {self.root!r} is a local folder")
        return self._fs

    # ----------------------------------------------------------------------------- loading

    def path_for(self, artifact: StoredArtifact) -> Path:
        """Return the verified stored file of an artifact (local roots only).

        Raises:
            ValueError: If the root is remote (use :meth:`local_path`).
            ArtifactLocationError: If the URI lies outside the store's root.
            FileNotFoundError: If the artifact is missing from the store.
            ArtifactIntegrityError: If its bytes do not hash to its recorded checksum.
        """
        if self.local_root is None:
            raise ValueError(
                f"artifact root {self.root!r} is remote: use local_path() for a local copy"
            )
        path = self._local_location(artifact)
        if not path.is_file():
            raise FileNotFoundError(f"artifact {artifact.sha256} is missing at {path}")
        self._check(artifact, str(path), sha256_file(path))
        return path

    def local_path(self, artifact: StoredArtifact) -> Path:
        """Return a verified local file holding an artifact's bytes.

        For a local root this is the stored file (:meth:`path_for`). For a remote root it is a
        copy in ``cache_dir`` named by sha256: downloaded on first use, re-hashed on every call
        and downloaded again when it no longer matches.

        Raises:
            ArtifactLocationError: If the URI lies outside the store's root.
            FileNotFoundError: If the artifact is missing from the store.
            ArtifactIntegrityError: If the stored bytes do not hash to the recorded checksum.
        """
        if self.local_root is not None:
            return self.path_for(artifact)
        remote = self._remote_location(artifact)
        name = remote.rsplit("/", 1)[-1]
        cached = self.cache_dir / artifact.sha256[:2] / name
        if cached.is_file() and sha256_file(cached) == artifact.sha256:
            return cached
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".tmp-")
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, self._open_remote(artifact, remote) as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            self._check(artifact, self.location(artifact), digest.hexdigest())
            os.replace(tmp, cached)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return cached

    def get_bytes(self, artifact: StoredArtifact) -> bytes:
        """Load an artifact's bytes from the store, verifying their checksum.

        Raises:
            ArtifactLocationError: If the URI lies outside the store's root.
            FileNotFoundError: If the artifact is missing from the store.
            ArtifactIntegrityError: If its bytes do not hash to its recorded checksum.
        """
        if self.local_root is not None:
            path = self._local_location(artifact)
            try:
                data = path.read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                raise FileNotFoundError(
                    f"artifact {artifact.sha256} is missing at {path}"
                ) from None
            where = str(path)
        else:
            remote = self._remote_location(artifact)
            with self._open_remote(artifact, remote) as fh:
                data = fh.read()
            where = self._remote_fs().unstrip_protocol(remote)
        self._check(artifact, where, hashlib.sha256(data).hexdigest())
        return data

    def verify(self, artifact: StoredArtifact) -> None:
        """Check the stored artifact hashes to its checksum, streaming it (no copy kept).

        Raises:
            ArtifactLocationError: If the URI lies outside the store's root.
            FileNotFoundError: If the artifact is missing from the store.
            ArtifactIntegrityError: If its bytes do not hash to its recorded checksum.
        """
        if self.local_root is not None:
            self.path_for(artifact)
            return
        remote = self._remote_location(artifact)
        with self._open_remote(artifact, remote) as fh:
            actual = _sha256_stream(fh)
        self._check(artifact, self._remote_fs().unstrip_protocol(remote), actual)

    @staticmethod
    def _check(artifact: StoredArtifact, where: str, actual: str) -> None:
        if actual != artifact.sha256:
            raise ArtifactIntegrityError(
                f"artifact at {where} hashes to {actual}, expected {artifact.sha256}: "
                "the file was modified or corrupted; rebuild it from its asset"
            )

    def _open_remote(self, artifact: StoredArtifact, path: str) -> _RemoteReader:
        return _RemoteReader(self._remote_fs(), path, artifact)

    def _hash_remote(self, path: str) -> str:
        with self._remote_fs().open(path, "rb") as fh:
            return _sha256_stream(fh)


class _RemoteReader:
    """Open a remote artifact for reading; a missing one is a FileNotFoundError naming it."""

    def __init__(self, fs: AbstractFileSystem, path: str, artifact: StoredArtifact) -> None:
        self._fs, self._path, self._artifact = fs, path, artifact
        self._fh: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        try:
            self._fh = self._fs.open(self._path, "rb")
        except FileNotFoundError:
            url = self._fs.unstrip_protocol(self._path)
            raise FileNotFoundError(
                f"artifact {self._artifact.sha256} is missing at {url}"
            ) from None
        return self._fh

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()


def _write_local_atomic(path: Path, data: bytes) -> None:
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
