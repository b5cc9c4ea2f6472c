"""Bad input gets a 4xx with a message, and every request costs bounded work: time windows,
resource limits and bulk requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest

from app.ops.facade import LocalOperations
from tests.conftest import stdio_server_spec
from tests.test_http_api import client, tokens

__all__ = ["client", "tokens"]  # the fixtures: an HTTP client of the API, with its token

ANALYTICS = "/api/v1/analytics/toolservers"
SERVERS = "/api/v1/toolservers/servers"
BULK = "/api/v1/toolservers/servers/bulk"


def refused(answer: httpx2.Response, field: str) -> str:
    assert answer.status_code == 422, answer.text
    body: dict[str, Any] = answer.json()
    assert body["field"].endswith(field), body
    message: str = body["message"]
    return message


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# ---- time windows ----------------------------------------------------------------------------


async def test_an_end_in_the_future_is_now(client: httpx2.AsyncClient) -> None:
    """Before: a 500 (KeyError in storage/analytics.py) for any end in the future."""
    now = datetime.now(UTC)
    future = await client.get(
        ANALYTICS,
        params={"start": iso(now - timedelta(days=1)), "end": iso(now + timedelta(days=6))},
    )
    assert future.status_code == 200, future.text
    far = await client.get(
        ANALYTICS, params={"start": iso(now - timedelta(days=1)), "end": "9999-12-31T23:59:59Z"}
    )
    assert far.status_code == 200, far.text


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        # Before: a 500 (OverflowError).
        ({"end": "0001-01-01T00:00:00Z"}, "end", "end must be after"),
        ({"start": "2026-11-29T00:00:00Z", "end": "0001-01-01T00:00:00Z"}, "end", "after"),
        # Before: 10 s of CPU for a window of two thousand years.
        ({"start": "0026-11-29T00:00:00Z", "end": "2026-11-29T00:00:00Z"}, "start", "ten years"),
        ({"start": "2026-11-29T00:00:00Z", "end": "2026-11-28T00:00:00Z"}, "start", "before"),
        ({"start": "9999-12-31T23:59:59-05:00"}, "start", "out of range"),
    ],
)
async def test_windows_out_of_bounds_are_refused(
    client: httpx2.AsyncClient, params: dict[str, str], field: str, says: str
) -> None:
    assert says in refused(await client.get(ANALYTICS, params=params), field)


async def test_a_window_of_ten_years_is_answered(client: httpx2.AsyncClient) -> None:
    now = datetime.now(UTC)
    start = iso(now - timedelta(days=3650))
    answer = await client.get(f"{ANALYTICS}/timeseries", params={"start": start, "end": iso(now)})
    assert answer.status_code in (200, 404), answer.text


# ---- limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"rlimit_nofile": 9223372036854775808}, "rlimit_nofile"),  # before: a 500
        ({"rlimit_as_mb": 1 << 40}, "rlimit_as_mb"),
        ({"rlimit_cpu_s": 1 << 40}, "rlimit_cpu_s"),
        ({"max_rss_mb": 1e300}, "max_rss_mb"),
        ({"max_cpu_percent": 1e9}, "max_cpu_percent"),
    ],
)
async def test_limits_have_upper_bounds(
    client: httpx2.AsyncClient, ops: LocalOperations, limits: dict[str, Any], field: str
) -> None:
    server = await ops.create_server(stdio_server_spec("bounded", "tiny"), actor="test")
    refused(await client.put(f"{SERVERS}/{server.id}/limits", json=limits), field)
    assert (await ops.get_server_limits(server.id)).rlimit_nofile is None


async def test_an_infinite_limit_is_refused(
    client: httpx2.AsyncClient, ops: LocalOperations
) -> None:
    """Before: `max_rss_mb: Infinity` was accepted and stored."""
    server = await ops.create_server(stdio_server_spec("bounded", "tiny"), actor="test")
    body = '{"max_rss_mb": Infinity}'
    answer = await client.put(
        f"{SERVERS}/{server.id}/limits",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert 400 <= answer.status_code < 500, answer.text
    assert (await ops.get_server_limits(server.id)).max_rss_mb is None


# ---- bulk ------------------------------------------------------------------------------------


async def test_bulk_takes_at_most_a_thousand_ids(client: httpx2.AsyncClient) -> None:
    """Before: 10,000 ids took 15 s."""
    ids = [f"server-{n}" for n in range(1001)]
    refused(await client.post(BULK, json={"server_ids": ids, "operation": "stop"}), "server_ids")


async def test_bulk_acts_once_per_server_named_twice(
    client: httpx2.AsyncClient, ops: LocalOperations
) -> None:
    """Before: a server's name and its id restarted it twice, concurrently."""
    server = await ops.create_server(stdio_server_spec("twice", "tiny"), actor="test")
    answer = await client.post(
        BULK,
        json={"server_ids": ["twice", server.id, "twice", "missing"], "operation": "disable"},
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["total_requested"] == 2
    assert [(item["server_id"], item["success"]) for item in result["results"]] == [
        ("twice", True),
        ("missing", False),
    ]
    disabled = await ops.list_events("twice", kind="disabled", limit=10)
    assert len(disabled) == 1
    assert not (await ops.get_server("twice")).enabled
