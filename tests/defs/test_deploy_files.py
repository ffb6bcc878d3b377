"""The shipped deployment files: valid for the Dagster they are for, and no secret in them."""

from pathlib import Path

import pytest
import yaml
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_production_instance_validates_against_dagsters_schema_and_reads_secrets_from_env():
    config, _ = dagster_instance_config(str(DEPLOY), "dagster.production.yaml")
    assert config["run_launcher"]["class"] == "WatchedRunLauncher"
    assert config["run_monitoring"]["enabled"] is True
    assert config["concurrency"]["pools"]["granularity"] == "op"
    database = config["storage"]["postgres"]["postgres_db"]
    assert database["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert all(isinstance(value, dict) and "env" in value
               for key, value in database.items() if key != "params")  # fmt: skip


def test_a_broken_instance_file_is_refused(tmp_path):
    text = (DEPLOY / "dagster.production.yaml").read_text()
    (tmp_path / "dagster.yaml").write_text(text.replace("max_concurrent_runs: 8", "max_runs: 8"))
    with pytest.raises(DagsterInvalidConfigError):
        dagster_instance_config(str(tmp_path))


def test_the_celery_worker_config_takes_the_broker_from_the_environment():
    worker = yaml.safe_load((DEPLOY / "celery-worker.yaml").read_text())
    config = worker["execution"]["config"]
    assert config["broker"] == {"env": "GOLDRL_CELERY_BROKER_URL"}
    assert config["config_source"]["task_acks_late"] is True
    for name in ("dagster.production.yaml", "celery-worker.yaml", "helm-values.yaml"):
        text = (DEPLOY / name).read_text()
        assert "amqp://guest" not in text and "password: " not in text.replace(
            "password: {env: DAGSTER_PG_PASSWORD}", ""
        ), name
