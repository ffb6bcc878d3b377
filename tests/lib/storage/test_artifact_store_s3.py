"""The artifact store on S3: a local S3-compatible server (moto's server mode) started here."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from artifact_files import overwrite_stored_artifact
from local_s3 import LocalS3, local_s3
from planted_policy import (
    planted_market,
    register_planted_dataset,
    register_planted_model,
)

from goldrl_dagster.lib.config import Settings, load_settings
from goldrl_dagster.lib.datasets.loading import load_dataset
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.artifacts import (
    ArtifactIntegrityError,
    ArtifactLocationError,
    ArtifactStore,
    StoredArtifact,
)
from goldrl_dagster.lib.storage.registry import load_dataset_record, load_model_record


@pytest.fixture(scope="module")
def s3() -> Iterator[LocalS3]:
    with local_s3() as server:
        yield server


def _s3_settings(s3: LocalS3, home: Path, bucket: str) -> Settings:
    """Settings as an operator writes them: the root URL and the options as JSON."""
    return load_settings(
        {
            "GOLDRL_HOME": str(home),
            "GOLDRL_ARTIFACT_ROOT": f"s3://{bucket}/goldrl/artifacts/",
            "GOLDRL_ARTIFACT_STORAGE_OPTIONS": json.dumps(s3.storage_options()),
        }
    )


def _store(s3: LocalS3, tmp_path: Path) -> tuple[ArtifactStore, str]:
    bucket = s3.new_bucket()
    settings = _s3_settings(s3, tmp_path / "home", bucket)
    store = ArtifactStore(
        settings.artifact_root,
        storage_options=settings.artifact_storage_options,
        cache_dir=settings.home / "artifact-cache",
    )
    return store, bucket


def _key(stored: StoredArtifact, bucket: str) -> str:
    return stored.uri.removeprefix(f"s3://{bucket}/")


def test_round_trip_names_objects_by_checksum(s3: LocalS3, tmp_path: Path):
    store, bucket = _store(s3, tmp_path)
    assert not store.is_local
    stored = store.put_bytes(b"model weights", ".zip")
    assert stored.uri == f"s3://{bucket}/goldrl/artifacts/{stored.sha256[:2]}/{stored.sha256}.zip"
    body = s3.client().get_object(Bucket=bucket, Key=_key(stored, bucket))["Body"].read()
    assert body == b"model weights"  # really on the server, under its content address
    assert store.get_bytes(stored) == b"model weights"
    store.verify(stored)
    local = store.local_path(stored)
    assert local.read_bytes() == b"model weights"
    assert local.is_relative_to(tmp_path / "home" / "artifact-cache")
    # path_for is for local roots; the message points at local_path.
    with pytest.raises(ValueError, match="local_path"):
        store.path_for(stored)


def test_a_corrupted_object_is_refused_and_storing_again_repairs_it(s3: LocalS3, tmp_path: Path):
    store, bucket = _store(s3, tmp_path)
    stored = store.put_bytes(b"dataset bytes " * 1000, ".parquet")
    good = store.get_bytes(stored)
    # Tampered on the server by another client (not through the store).
    s3.client().put_object(Bucket=bucket, Key=_key(stored, bucket), Body=good[:-1] + b"!")
    with pytest.raises(ArtifactIntegrityError, match="modified or corrupted"):
        store.get_bytes(stored)
    with pytest.raises(ArtifactIntegrityError, match="modified or corrupted"):
        store.verify(stored)
    with pytest.raises(ArtifactIntegrityError, match="modified or corrupted"):
        store.local_path(stored)
    # The refused download left nothing in the cache.
    assert not [p for p in (tmp_path / "home" / "artifact-cache").rglob("*") if p.is_file()]
    assert store.put_bytes(good, ".parquet") == stored
    assert store.get_bytes(stored) == good
    assert store.local_path(stored).read_bytes() == good
    # A missing object is a FileNotFoundError naming it.
    s3.client().delete_object(Bucket=bucket, Key=_key(stored, bucket))
    with pytest.raises(FileNotFoundError, match=f"missing at {stored.uri}"):
        store.get_bytes(stored)


def test_the_local_copy_is_verified_on_every_call(s3: LocalS3, tmp_path: Path):
    store, _ = _store(s3, tmp_path)
    stored = store.put_bytes(b"policy bundle", ".zip")
    cached = store.local_path(stored)
    cached.write_bytes(b"policy bundlX")  # the cache copy is damaged on disk
    again = store.local_path(stored)
    assert again == cached and again.read_bytes() == b"policy bundle"
    # Once verified and cached, the copy serves loads; the object store is re-read only when
    # the copy is bad: overwrite the object, the good cached copy is still returned as is.
    overwrite_stored_artifact(store, stored, b"tampered object")
    assert store.local_path(stored).read_bytes() == b"policy bundle"
    with pytest.raises(ArtifactIntegrityError):
        store.get_bytes(stored)  # loads from the store itself are always verified


def test_uris_outside_the_bucket_prefix_are_refused(s3: LocalS3, tmp_path: Path):
    store, bucket = _store(s3, tmp_path)
    stored = store.put_bytes(b"inside", ".zip")
    other = s3.new_bucket()
    s3.client().put_object(Bucket=other, Key=f"goldrl/artifacts/{_key(stored, bucket)}",
                           Body=b"inside")  # fmt: skip
    name = f"{stored.sha256[:2]}/{stored.sha256}.zip"
    for uri in (
        f"s3://{other}/goldrl/artifacts/{name}",  # another bucket, same prefix, right bytes
        f"s3://{bucket}/goldrl/other/{name}",
        f"s3://{bucket}/goldrl/artifacts-evil/{name}",
        f"s3://{bucket}/goldrl/artifacts/../other/{name}",
        f"s3://{bucket}/goldrl/artifacts",
        f"gs://{bucket}/goldrl/artifacts/{name}",
        "file:///etc/passwd",
    ):
        row = StoredArtifact(stored.sha256, uri, stored.size_bytes)
        for load in (store.get_bytes, store.local_path, store.verify):
            with pytest.raises(ArtifactLocationError) as refused:
                load(row)
            assert repr(uri) in str(refused.value)
            assert repr(f"s3://{bucket}/goldrl/artifacts") in str(refused.value)


def test_a_registered_dataset_and_model_round_trip_through_the_runtime(
    s3: LocalS3, settings: Settings, clean_database, tmp_path: Path
):
    bucket = s3.new_bucket()
    remote = _s3_settings(s3, settings.home, bucket)
    runtime = open_runtime(
        dataclasses.replace(
            settings,
            artifact_root=remote.artifact_root,
            artifact_storage_options_json=remote.artifact_storage_options_json,
        )
    )
    assert runtime.artifacts.root == f"s3://{bucket}/goldrl/artifacts"
    # What datasets/dataset_version and models/trained_policy do: store, register, load back.
    table = planted_market(days=3, seed=5)
    digest = register_planted_dataset(runtime, table, "15m")
    record = load_dataset_record(runtime.db, digest)
    assert record.artifact.uri.startswith(f"s3://{bucket}/goldrl/artifacts/")
    loaded = load_dataset(runtime, digest)
    assert loaded.table.equals(table)

    from goldrl_dagster.lib.rl.policy import load_policy

    register_planted_model(runtime, table, digest, "ppo-on-s3", "signal_strong", tmp_path)
    model = load_model_record(runtime.db, "ppo-on-s3")
    assert model.artifact.uri.startswith(f"s3://{bucket}/goldrl/artifacts/")
    bundle = runtime.artifacts.local_path(model.artifact)
    assert bundle.is_relative_to(settings.home / "artifact-cache")
    policy = load_policy(bundle)
    assert policy.card["follows"] == "signal_strong"
    # A corrupted dataset object fails the asset's load instead of training on bad bytes.
    overwrite_stored_artifact(runtime.artifacts, record.artifact, b"PAR1 not a dataset")
    with pytest.raises(ArtifactIntegrityError):
        load_dataset(runtime, digest)
