"""Read what an upstream asset's latest materialization recorded (its hash or id)."""

import dagster as dg


def upstream_value(context: dg.AssetExecutionContext, key: dg.AssetKey, name: str) -> str:
    """Return a metadata value of the latest materialization of an upstream asset.

    Downstream assets pin themselves to exactly what their upstream produced (a dataset hash, a
    model id) instead of guessing "the newest row" in the database.

    Raises:
        dg.Failure: If the upstream asset was never materialized or lacks the value.
    """
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        raise dg.Failure(f"{key.to_user_string()} has not been materialized yet; run it first")
    value = event.asset_materialization.metadata.get(name)
    if value is None:
        raise dg.Failure(f"{key.to_user_string()}'s latest materialization has no {name!r}")
    return str(value.value)
