"""The local artifact store: odd home paths, repair of tampered artifacts, URIs outside the root.

Remote roots (S3 through a local moto server) are in ``test_artifact_store_s3.py``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from urllib.parse import quote

import pytest
from artifact_files import overwrite_stored_artifact, stored_file

from goldrl_dagster.lib.config import SettingsError, load_settings
from goldrl_dagster.lib.storage.artifacts import (
    ArtifactIntegrityError,
    ArtifactLocationError,
    ArtifactStore,
    StoredArtifact,
)
from goldrl_dagster.lib.storage.registry import artifact_by_sha

ODD_HOME = "goldrl home %41 #1 ünï"


def test_a_home_with_space_percent_hash_and_non_ascii_round_trips(tmp_path: Path):
    settings = load_settings({"GOLDRL_HOME": str(tmp_path / ODD_HOME)})
    store = ArtifactStore(settings.artifact_root, cache_dir=settings.home / "artifact-cache")
    stored = store.put_bytes(b"policy weights", ".zip")
    # The URI is a proper file:// URI: escaped, so it survives the database and a URL parser.
    assert " " not in stored.uri and "#" not in stored.uri and "ü" not in stored.uri
    assert "%2541" in stored.uri  # the literal "%41" of the folder name, escaped
    # A second store (another process) reads the row's URI back to the same file.
    again = ArtifactStore(load_settings({"GOLDRL_HOME": str(tmp_path / ODD_HOME)}).artifact_root)
    row = StoredArtifact(stored.sha256, stored.uri, stored.size_bytes)
    assert again.get_bytes(row) == b"policy weights"
    path = again.path_for(row)
    assert path.parent.parent == tmp_path / ODD_HOME / "artifacts"  # "%41" stays "%41"
    assert again.local_path(row) == path
    again.verify(row)


def test_storing_a_tampered_artifact_again_repairs_it(tmp_path: Path, caplog):
    store = ArtifactStore(tmp_path / "artifacts")
    stored = store.put_bytes(b"model weights", ".zip")
    for damage in (b"tampered!", b"model weigh", b""):
        overwrite_stored_artifact(store, stored, damage)
        with pytest.raises(ArtifactIntegrityError, match="modified or corrupted"):
            store.get_bytes(stored)
        with caplog.at_level(logging.WARNING, logger="goldrl_dagster.lib.storage.artifacts"):
            assert store.put_bytes(b"model weights", ".zip") == stored
        assert "replacing it with the correct bytes" in caplog.text
        caplog.clear()
        assert store.get_bytes(stored) == b"model weights"
        assert store.path_for(stored).read_bytes() == b"model weights"
    # An intact artifact is left alone (not rewritten): its inode and mtime stay.
    before = stored_file(store, stored).stat()
    with caplog.at_level(logging.WARNING):
        store.put_bytes(b"model weights", ".zip")
    after = stored_file(store, stored).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert "replacing" not in caplog.text
    # A file deleted by hand comes back too.
    stored_file(store, stored).unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        store.get_bytes(stored)
    store.put_file(_write(tmp_path / "weights.zip", b"model weights"))
    assert store.get_bytes(stored) == b"model weights"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _outside_uris(root: Path) -> list[str]:
    sibling = root.parent / f"{root.name}-evil" / "ab" / "x.zip"
    return [
        "file:///etc/passwd",
        f"{root.as_uri()}/../outside.zip",
        f"{root.as_uri()}/ab/%2E%2E/%2E%2E/outside.zip",
        sibling.as_uri(),
        root.as_uri(),
        "file://otherhost/" + quote(str(root / "ab" / "x.zip")).lstrip("/"),
        str(root / "ab" / "x.zip"),  # not a URI at all
        "s3://bucket/artifacts/ab/x.zip",
    ]


@pytest.mark.parametrize("index", range(8))
def test_uris_outside_the_root_are_refused(tmp_path: Path, index: int):
    root = tmp_path / "artifacts"
    store = ArtifactStore(root)
    store.put_bytes(b"inside", ".zip")
    # A real file outside the root whose row carries its true checksum: only the location
    # check stands between a crafted row and reading it.
    outside = _write(tmp_path / "outside.zip", b"secret outside the store")
    sha = hashlib.sha256(outside.read_bytes()).hexdigest()
    uri = _outside_uris(root)[index]
    row = StoredArtifact(sha, uri, outside.stat().st_size)
    for load in (store.get_bytes, store.path_for, store.local_path, store.verify, store.location):
        with pytest.raises(ArtifactLocationError) as refused:
            load(row)
        message = str(refused.value)
        assert repr(uri) in message and repr(str(root)) in message
        assert "refusing" in message


def test_a_database_row_outside_the_root_is_refused_on_load(database, tmp_path: Path):
    store = ArtifactStore(tmp_path / "artifacts")
    sha = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    with database.connect() as conn:
        conn.execute(
            "INSERT INTO artifacts (sha256, uri, size_bytes, kind) VALUES (%s, %s, 1, 'model') "
            "ON CONFLICT (sha256) DO UPDATE SET uri = EXCLUDED.uri",
            (sha, "file:///etc/passwd"),
        )
        conn.commit()
    row = artifact_by_sha(database, sha)
    with pytest.raises(ArtifactLocationError, match="'file:///etc/passwd', which is outside"):
        store.get_bytes(row)
    # ArtifactLocationError is an integrity error: code refusing corrupt artifacts refuses it.
    with pytest.raises(ArtifactIntegrityError):
        store.path_for(row)


def test_artifact_root_setting_accepts_folders_file_uris_and_fsspec_urls(tmp_path: Path):
    home = tmp_path / "home"
    assert load_settings({"GOLDRL_HOME": str(home)}).artifact_root == str(home / "artifacts")
    odd = tmp_path / ODD_HOME
    as_uri = load_settings({"GOLDRL_ARTIFACT_ROOT": odd.as_uri()}).artifact_root
    assert as_uri == str(odd)
    s3 = load_settings({"GOLDRL_ARTIFACT_ROOT": "s3://bucket/goldrl/artifacts/"})
    assert s3.artifact_root == "s3://bucket/goldrl/artifacts"
    assert load_settings({"GOLDRL_ARTIFACT_ROOT": "memory://store"}).artifact_root == (
        "memory://store"
    )
    for bad in ("nosuchfs://bucket/x", "s3://", "s3:// bucket"):
        with pytest.raises(SettingsError, match=r"^GOLDRL_ARTIFACT_ROOT="):
            load_settings({"GOLDRL_ARTIFACT_ROOT": bad})
    a_file = _write(tmp_path / "file", b"")
    with pytest.raises(SettingsError, match=r"GOLDRL_ARTIFACT_ROOT=.*not a file"):
        load_settings({"GOLDRL_ARTIFACT_ROOT": a_file.as_uri()})


def test_storage_options_setting_is_validated_and_never_shown():
    secret = "wJalrXUtnFEMI-K7MDENG"
    settings = load_settings(
        {
            "GOLDRL_ARTIFACT_ROOT": "s3://bucket/x",
            "GOLDRL_ARTIFACT_STORAGE_OPTIONS": f'{{"secret": "{secret}", "key": "AKIA1"}}',
        }
    )
    assert settings.artifact_storage_options == {"key": "AKIA1", "secret": secret}
    assert secret not in repr(settings)
    assert load_settings({}).artifact_storage_options == {}
    for bad in (f'{{"secret": "{secret}"', f'["{secret}"]', f'"{secret}"'):
        with pytest.raises(SettingsError, match=r"^GOLDRL_ARTIFACT_STORAGE_OPTIONS ") as refused:
            load_settings({"GOLDRL_ARTIFACT_STORAGE_OPTIONS": bad})
        assert secret not in str(refused.value)
