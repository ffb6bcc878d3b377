"""The database password never reaches the Dagster UI: resources bind the URL by variable name."""

import dagster as dg

from goldrl_dagster.defs.resources import resources


def test_an_external_database_url_is_bound_by_name_not_by_value(monkeypatch, tmp_path):
    monkeypatch.setenv("GOLDRL_HOME", str(tmp_path))
    monkeypatch.setenv("GOLDRL_DATABASE_URL", "postgresql://goldrl:s3cr3t-pw@127.0.0.1:1/db")
    storage = resources().resources["storage"]
    bound = storage.database_url
    assert isinstance(bound, dg.EnvVar) and bound.env_var_name == "GOLDRL_DATABASE_URL"
    # What the UI lists as the resource's configuration holds the name only.
    shown = repr(storage) + repr(storage._get_non_default_public_field_values())
    assert "s3cr3t-pw" not in shown
    # A run resolves the variable.
    assert storage.process_config_and_initialize().database_url.endswith("@127.0.0.1:1/db")


def test_the_embedded_default_binds_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("GOLDRL_HOME", str(tmp_path))
    monkeypatch.delenv("GOLDRL_DATABASE_URL", raising=False)
    assert resources().resources["storage"].database_url == ""
