"""Alerts posted to a local webhook: once per firing (dedup), within a rate limit, retried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from alert_webhook_support import local_webhook

from goldrl_dagster.lib.alerts.conditions import Alert
from goldrl_dagster.lib.alerts.dispatch import RateLimit, dispatch
from goldrl_dagster.lib.alerts.webhook import WebhookError, WebhookSender, redact_webhook_url

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def _alert(n: int, severity: str = "page") -> Alert:
    return Alert(f"stale_heartbeat:paper:{n}", "stale_heartbeat", severity, f"session {n} silent")


def _sender(url: str) -> WebhookSender:
    return WebhookSender(url, attempts=3, backoff=(0.01, 0.02), timeout=5.0)


def test_the_same_alert_is_posted_once_until_it_resolves(clean_database):
    with local_webhook() as hook:
        send = _sender(hook.url)
        first = dispatch(clean_database, [_alert(1)], send, now=T0)
        second = dispatch(clean_database, [_alert(1)], send, now=T0 + timedelta(minutes=1))
        assert (first.posted, second.posted, second.deduplicated) == (
            [_alert(1).key], [], [_alert(1).key]
        )
        assert hook.texts() == ["[goldrl PAGE] stale_heartbeat: session 1 silent"]
        # It stops firing (resolved, nothing posted), then fires again: posted again.
        quiet = dispatch(clean_database, [], send, now=T0 + timedelta(minutes=2))
        assert quiet.resolved == [_alert(1).key] and len(hook.posts) == 1
        dispatch(clean_database, [_alert(1)], send, now=T0 + timedelta(minutes=3))
        assert len(hook.posts) == 2


def test_the_rate_limit_holds_back_posts_until_the_window_allows(clean_database):
    limit = RateLimit(max_posts=2, window=timedelta(minutes=10))
    alerts = [_alert(1, "ticket"), _alert(2), _alert(3)]
    with local_webhook() as hook:
        send = _sender(hook.url)
        report = dispatch(clean_database, alerts, send, now=T0, rate_limit=limit)
        # Pages go first; the third alert waits.
        assert report.posted == [_alert(2).key, _alert(3).key]
        assert report.rate_limited == [_alert(1).key]
        later = dispatch(clean_database, alerts, send, now=T0 + timedelta(minutes=5),
                         rate_limit=limit)  # fmt: skip
        assert later.rate_limited == [_alert(1).key] and len(hook.posts) == 2
        after = dispatch(clean_database, alerts, send, now=T0 + timedelta(minutes=11),
                         rate_limit=limit)  # fmt: skip
        assert after.posted == [_alert(1).key]
        assert sorted(after.deduplicated) == [_alert(2).key, _alert(3).key]
        assert len(hook.posts) == 3


def test_server_errors_are_retried_and_a_refusal_is_retried_next_time(clean_database):
    with local_webhook() as hook:
        send = _sender(hook.url)
        hook.statuses = [500, 503]  # then 200
        report = dispatch(clean_database, [_alert(1)], send, now=T0)
        assert report.posted == [_alert(1).key]
        assert len(hook.requests) == 3 and len(hook.posts) == 1
        hook.statuses = [400]
        refused = dispatch(clean_database, [_alert(1), _alert(2)], send, now=T0)
        assert refused.failed == [_alert(2).key] and refused.deduplicated == [_alert(1).key]
        again = dispatch(clean_database, [_alert(1), _alert(2)], send, now=T0)
        assert again.posted == [_alert(2).key]
    with clean_database.connect() as conn:
        details = [r[0] for r in conn.execute(
            "SELECT detail FROM alert_deliveries WHERE NOT delivered"
        )]  # fmt: skip
    assert details == ["WebhookError: webhook http://127.0.0.1:" + hook.url.split(":")[2]
                       .split("/")[0] + "/… refused the alert: HTTP 400"]  # fmt: skip


def test_no_webhook_records_alerts_without_posting(clean_database):
    report = dispatch(clean_database, [_alert(1)], None, now=T0)
    assert report.unsent == [_alert(1).key] and report.posted == []


def test_the_webhook_url_is_never_shown():
    url = "https://hooks.slack.com/services/T0/B0/s3cr3tT0ken"
    assert redact_webhook_url(url) == "https://hooks.slack.com/…"
    sender = WebhookSender(url, attempts=2, backoff=(0.0, 0.0),
                           transport=httpx.MockTransport(lambda request: httpx.Response(502)))
    assert "s3cr3t" not in repr(sender)
    with pytest.raises(WebhookError) as failure:
        sender("hello")
    assert "s3cr3t" not in str(failure.value) and "HTTP 502" in str(failure.value)

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}")

    sender = WebhookSender(url, attempts=2, backoff=(0.0, 0.0),
                           transport=httpx.MockTransport(unreachable))  # fmt: skip
    with pytest.raises(WebhookError) as failure:
        sender("hello")
    assert "s3cr3t" not in str(failure.value) and "ConnectError" in str(failure.value)
