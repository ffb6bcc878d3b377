"""GOLDRL_EXECUTOR and GOLDRL_CELERY_BROKER_URL: validated, the broker password never shown."""

import pytest

from goldrl_dagster.defs.executor import CELERY_APP_CONFIG, celery_executor_config
from goldrl_dagster.lib.config import SettingsError, load_settings


def test_the_executor_defaults_to_multiprocess_and_a_bad_one_is_named(tmp_path):
    assert load_settings({"GOLDRL_HOME": str(tmp_path)}).executor == "multiprocess"
    with pytest.raises(SettingsError, match="GOLDRL_EXECUTOR='k8s'"):
        load_settings({"GOLDRL_HOME": str(tmp_path), "GOLDRL_EXECUTOR": "k8s"})


def test_a_bad_broker_url_is_refused_without_its_password(tmp_path):
    env = {"GOLDRL_HOME": str(tmp_path), "GOLDRL_CELERY_BROKER_URL": "http://u:s3cret@h/"}
    with pytest.raises(SettingsError) as error:
        load_settings(env)
    assert "s3cret" not in str(error.value)
    settings = load_settings({**env, "GOLDRL_CELERY_BROKER_URL": "amqp://u:s3cret@h:5672//"})
    assert "s3cret" not in repr(settings)


def test_the_celery_executor_acknowledges_a_task_only_after_it_ran(tmp_path):
    settings = load_settings({"GOLDRL_HOME": str(tmp_path), "GOLDRL_EXECUTOR": "celery"})
    config = celery_executor_config(settings)
    assert config["broker"].startswith("amqp://guest@127.0.0.1:5672")
    assert config["config_source"]["task_acks_late"] is True
    assert CELERY_APP_CONFIG["task_reject_on_worker_lost"] is True
