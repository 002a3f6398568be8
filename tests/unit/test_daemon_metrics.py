"""DaemonMetrics hooks: what each pipeline event adds, retries, the heartbeat's rolling rate,
the periodic queue and campaign readings, and the disabled (benchmark baseline) mode."""

from __future__ import annotations

from sender.db.monitoring import CampaignActivity
from sender.metrics import DaemonMetrics
from sender.mitto import OutcomeKind, SendOutcome
from sender.queues import QueueStats

ACCEPTED = SendOutcome(OutcomeKind.ACCEPTED, "306900000001", provider_id="m1")
THROTTLED = SendOutcome(OutcomeKind.THROTTLED, "306900000001", category="rate_limited")
INVALID = SendOutcome(OutcomeKind.PERMANENT, "306900000001", category="invalid_number")


def sample(metrics: DaemonMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_requests_count_messages_by_outcome_category_and_endpoint() -> None:
    metrics = DaemonMetrics()
    for _ in range(3):
        metrics.request_done(ACCEPTED, 0.02, 1)
    metrics.request_done(INVALID, 0.03, 1)
    metrics.request_done(ACCEPTED, 0.2, 500)
    metrics.request_done(THROTTLED, 0.01, 1)

    assert sample(metrics, "sender_messages_total", outcome="accepted", category="none") == 503
    assert (
        sample(metrics, "sender_messages_total", outcome="permanent", category="invalid_number")
        == 1
    )
    assert (
        sample(metrics, "sender_provider_requests_total", outcome="accepted", endpoint="sms") == 3
    )
    assert (
        sample(metrics, "sender_provider_requests_total", outcome="accepted", endpoint="smsbulk")
        == 1
    )
    assert sample(metrics, "sender_provider_request_duration_seconds_count", endpoint="sms") == 5
    assert (
        sample(
            metrics, "sender_provider_request_duration_seconds_bucket", endpoint="sms", le="0.005"
        )
        == 0
    )
    assert (
        sample(
            metrics, "sender_provider_request_duration_seconds_bucket", endpoint="sms", le="0.02"
        )
        == 4
    )
    assert (
        sample(
            metrics, "sender_provider_request_duration_seconds_bucket", endpoint="sms", le="+Inf"
        )
        == 5
    )
    total = sample(metrics, "sender_provider_request_duration_seconds_sum", endpoint="sms")
    assert total is not None and abs(total - 0.1) < 1e-9
    # A value above every bound lands in +Inf only.
    metrics.request_done(ACCEPTED, 60.0, 500)
    assert (
        sample(
            metrics,
            "sender_provider_request_duration_seconds_bucket",
            endpoint="smsbulk",
            le="10.0",
        )
        == 1
    )
    assert (
        sample(
            metrics,
            "sender_provider_request_duration_seconds_bucket",
            endpoint="smsbulk",
            le="+Inf",
        )
        == 2
    )
    # Throttled answers are retried: they are not messages answered for the heartbeat rate.
    assert metrics.answered == 1004


def test_retries_count_only_recipients_with_earlier_attempts() -> None:
    metrics = DaemonMetrics()
    metrics.recipient_answered(0, ACCEPTED)
    metrics.recipient_answered(1, ACCEPTED)
    metrics.recipient_answered(2, ACCEPTED)
    metrics.recipient_answered(4, INVALID)
    assert sample(metrics, "sender_retries_total", result="accepted") == 2
    assert sample(metrics, "sender_retries_total", result="permanent") == 1


def test_limiter_and_flush_hooks() -> None:
    metrics = DaemonMetrics()
    metrics.limiter_waited(0.004)
    metrics.flush_done(1500, 0.012)
    metrics.flush_done(500, 0.3)
    assert sample(metrics, "sender_limiter_wait_seconds_count") == 1
    assert sample(metrics, "sender_outcome_flush_rows_total") == 2000
    assert sample(metrics, "sender_outcome_flush_duration_seconds_bucket", le="0.025") == 1
    assert sample(metrics, "sender_outcome_flush_duration_seconds_count") == 2


def test_message_rate_over_the_last_minute() -> None:
    metrics = DaemonMetrics()
    assert metrics.sample_message_rate(now=1000.0) == 0.0
    metrics.answered = 500
    assert metrics.sample_message_rate(now=1005.0) == 100.0
    metrics.answered = 3500
    assert metrics.sample_message_rate(now=1060.0) == 3500 / 60
    # Samples older than the window drop out: the first one (0 at t=1000) is gone.
    metrics.answered = 4100
    assert metrics.sample_message_rate(now=1065.0) == (4100 - 500) / 60
    # Nothing sent for a minute: the rate falls to zero.
    for step in range(1, 14):
        rate = metrics.sample_message_rate(now=1065.0 + 5 * step)
    assert rate == 0.0


def test_queue_and_campaign_readings_set_gauges() -> None:
    metrics = DaemonMetrics()
    metrics.queues_read(
        [
            QueueStats("high", waiting=4, running=2, deferred=1, oldest_age_s=12.5),
            QueueStats("normal", waiting=0, running=0, deferred=0, oldest_age_s=0.0),
        ]
    )
    metrics.campaigns_read(
        CampaignActivity(by_status={"scheduled": 1, "sending": 3, "paused": 0}, max_idle_s=42.0)
    )
    assert sample(metrics, "sender_queue_depth", queue="high") == 4
    assert sample(metrics, "sender_queue_running_jobs", queue="high") == 2
    assert sample(metrics, "sender_queue_deferred_jobs", queue="high") == 1
    assert sample(metrics, "sender_queue_oldest_job_age_seconds", queue="high") == 12.5
    assert sample(metrics, "sender_queue_depth", queue="normal") == 0
    assert sample(metrics, "sender_active_campaigns", status="sending") == 3
    assert sample(metrics, "sender_campaign_max_idle_seconds") == 42.0


def test_disabled_metrics_keep_only_the_heartbeat_count() -> None:
    metrics = DaemonMetrics(enabled=False)
    metrics.request_done(ACCEPTED, 0.02, 1)
    metrics.recipient_answered(2, ACCEPTED)
    metrics.limiter_waited(0.1)
    metrics.flush_done(10, 0.01)
    assert metrics.answered == 1
    assert sample(metrics, "sender_messages_total", outcome="accepted", category="none") is None
    assert sample(metrics, "sender_retries_total", result="accepted") is None
    assert sample(metrics, "sender_limiter_wait_seconds_count") == 0
    assert sample(metrics, "sender_outcome_flush_rows_total") == 0
    # Build info is there whatever the mode.
    assert sample(metrics, "sender_build_info", version=_version(metrics), component="daemon") == 1


def _version(metrics: DaemonMetrics) -> str:
    (family,) = [f for f in metrics.registry.collect() if f.name == "sender_build_info"]
    return str(family.samples[0].labels["version"])
