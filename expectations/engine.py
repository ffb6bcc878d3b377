"""One ephemeral Great Expectations context per process, shared by every goldrl suite.

GX is slow to import and to build a context, so the context, its pandas data source and one
whole-dataframe batch definition per suite are built once and reused. A GX context is not
meant to be shared by threads, hence the lock around every validation.
"""

from __future__ import annotations

import os
import threading
from functools import cache, lru_cache
from typing import Any

# Set before GX is imported so no code path of it ever sends usage events; the context below
# also disables analytics explicitly.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx
import pandas as pd
from great_expectations.core.batch_definition import BatchDefinition
from great_expectations.core.expectation_validation_result import (
    ExpectationSuiteValidationResult,
    ExpectationValidationResult,
)
from great_expectations.data_context.types.base import ProgressBarsConfig

_lock = threading.Lock()


@lru_cache(maxsize=1)
def gx_context() -> Any:
    """Return the process's ephemeral GX context (build suites only after calling this)."""
    context = gx.get_context(mode="ephemeral")
    context.enable_analytics(False)
    # The per-metric tqdm bars would flood Dagster's captured stderr on every validation.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


@cache
def _batch_definition(name: str) -> BatchDefinition:
    context = gx_context()
    try:
        source = context.data_sources.get("goldrl")
    except (KeyError, ValueError):
        source = context.data_sources.add_pandas("goldrl")
    return source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("whole_frame")


def run_suite(
    suite: gx.ExpectationSuite,
    frame: pd.DataFrame,
    *,
    parameters: dict[str, Any] | None = None,
    result_format: dict[str, Any] | None = None,
) -> ExpectationSuiteValidationResult:
    """Validate a pandas frame against a suite.

    Args:
        suite: The suite (one data asset per suite name is created on first use).
        frame: The batch, indexed ``0..n-1`` so GX's row indexes are row numbers.
        parameters: Values of the suite's ``$PARAMETER`` placeholders.
        result_format: GX result format (default: ``SUMMARY``).

    Returns:
        The raw GX validation result.
    """
    with _lock:
        batch = _batch_definition(suite.name).get_batch(batch_parameters={"dataframe": frame})
        return batch.validate(
            suite,
            result_format=result_format or {"result_format": "SUMMARY"},
            expectation_parameters=parameters or {},
        )


def column_of(kwargs: dict[str, Any]) -> str | None:
    """The column(s) an expectation's kwargs name, comma-joined; None for a table expectation."""
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_A" in kwargs:
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    if "column_list" in kwargs:
        return ",".join(kwargs["column_list"])
    return None


def failed_results(
    suite: gx.ExpectationSuite, outcome: ExpectationSuiteValidationResult
) -> list[ExpectationValidationResult]:
    """The failed expectation results of a validation, in the suite's order.

    GX reports results grouped by metric, not in suite order; sorting gives a stable report.
    (type, columns) identifies an expectation of a goldrl suite uniquely; ids are unset because
    the suites are never saved to a store.

    Args:
        suite: The suite that was validated.
        outcome: Its ``run_suite`` result.

    Returns:
        The results with ``success`` False.

    Raises:
        RuntimeError: If an expectation raised, so a GX error is never reported as a data defect.
    """
    position = {
        (e.expectation_type, column_of(e.configuration.kwargs)): i
        for i, e in enumerate(suite.expectations)
    }
    results = sorted(
        outcome.results,
        key=lambda r: position[(r.expectation_config.type, column_of(r.expectation_config.kwargs))],
    )
    failed = []
    for item in results:
        if item.success:
            continue
        raise_if_errored(item)
        failed.append(item)
    return failed


def raise_if_errored(item: ExpectationValidationResult) -> None:
    """Turn an expectation that raised inside GX into an error, never a data defect.

    Args:
        item: One expectation's validation result.

    Raises:
        RuntimeError: If the expectation or one of its metrics raised; the message names the
            expectation and GX's error.
    """
    messages = _exception_messages(item.exception_info or {})
    if messages:
        raise RuntimeError(
            f"expectation {item.expectation_config.type} raised: {'; '.join(messages)}"
        )


def _exception_messages(info: dict[str, Any]) -> list[str]:
    # GX puts an expectation's own error at the top level but a failed metric's under the
    # metric's id, one dict per metric.
    parts = [info, *(v for v in info.values() if isinstance(v, dict))]
    return [str(p.get("exception_message")) for p in parts if p.get("raised_exception")]
