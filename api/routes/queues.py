"""``GET /v1/admin/queues``: queue monitoring for operators (admin token).

One answer to "is it sending, how fast, how far behind, is a daemon down, is a campaign
stuck": each priority queue's backlog and oldest waiting job (``sender.queues``), the daemons
from their heartbeats, and the campaigns in ``sending`` with their progress, the most idle
first.

``messages_per_s_last_minute`` is the sum over live daemons of the rate each one publishes in
its heartbeat (recipients answered by the provider over its last minute, kept in memory by
the daemon). That costs one HGETALL, where counting recipients by ``sent_at`` would need an
index the send path would pay for on every outcome.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from api.jsonio import json_response
from api.keys import DB, REDIS, SETTINGS
from sender.db import monitoring as monitoring_db
from sender.db.monitoring import SendingCampaign
from sender.queues import DaemonInfo, QueueStats, read_daemons, read_queues

#: Sending campaigns listed with their progress; ``campaigns_sending.count`` counts them all.
MAX_CAMPAIGNS_LISTED = 50


def _queue_payload(stats: QueueStats) -> dict[str, Any]:
    return {
        "name": stats.priority,
        "depth": stats.waiting,
        "running": stats.running,
        "due": stats.due,
        "deferred": stats.deferred,
        "oldest_age_s": round(stats.oldest_age_s, 3),
    }


def _daemon_payload(info: DaemonInfo, now: float) -> dict[str, Any]:
    return {
        "id": info.id,
        "host": info.host,
        "pid": info.pid,
        "started_at": info.started_at,
        "last_heartbeat": datetime.fromtimestamp(info.heartbeat, UTC).isoformat(),
        "age_s": round(info.age_s(now), 3),
        "alive": info.alive(now),
        "in_flight": info.in_flight,
        "rate_per_s": info.rate_per_s,
        "messages_per_s": info.messages_per_s,
    }


def _campaign_payload(campaign: SendingCampaign) -> dict[str, Any]:
    done = campaign.done
    return {
        "id": campaign.id,
        "store_id": campaign.store_id,
        "priority": campaign.priority,
        "total": campaign.total,
        "done": done,
        "sent": campaign.sent,
        "failed": campaign.failed,
        "unknown": campaign.unknown,
        "skipped": campaign.skipped,
        "cancelled": campaign.cancelled,
        "percent": round(min(100.0 * done / campaign.total, 100.0), 2) if campaign.total else 0.0,
        "started_at": campaign.started_at.isoformat() if campaign.started_at else None,
        "last_progress_at": campaign.last_progress_at.isoformat(),
        "idle_s": round(max(campaign.idle_s, 0.0), 3),
        "waiting_reason": campaign.waiting_reason,
    }


async def queues(request: web.Request) -> web.Response:
    prefix = request.app[SETTINGS].redis_prefix
    redis, db = request.app[REDIS], request.app[DB]
    stats, daemons, activity, campaigns = await asyncio.gather(
        read_queues(redis, prefix),
        read_daemons(redis, prefix),
        monitoring_db.campaign_activity(db),
        monitoring_db.sending_campaigns(db, MAX_CAMPAIGNS_LISTED),
    )
    now = time.time()
    alive = [info for info in daemons if info.alive(now)]
    return json_response(
        {
            "at": datetime.fromtimestamp(now, UTC).isoformat(),
            "queues": [_queue_payload(queue) for queue in stats],
            "in_flight": sum(info.in_flight for info in alive),
            "messages_per_s_last_minute": round(sum(info.messages_per_s for info in alive), 2),
            "daemons_alive": len(alive),
            "daemons": [_daemon_payload(info, now) for info in daemons],
            "campaigns_sending": {
                "count": activity.by_status["sending"],
                "campaigns": [_campaign_payload(campaign) for campaign in campaigns],
            },
            "campaigns_by_status": activity.by_status,
        }
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/admin/queues", queues)
