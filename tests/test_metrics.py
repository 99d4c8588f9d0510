"""GET /metrics: Prometheus text that prometheus-client's own parser reads, with counts that match
what was just done, summed over `serve --workers 2`; served to configured networks or a token."""
from __future__ import annotations

import ipaddress
import os

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from amoiq_chat.appkeys import DB, SETTINGS

from .chat_fixtures import ServerProcess, make_tenant, recv, session_id, until
from .factories import expect


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} of an exposition."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_requests_and_messages_in_process(aiohttp_client, make_app):
    client = await aiohttp_client(make_app())
    tenant = await make_tenant(client.app[DB], client.app[SETTINGS])
    for _ in range(3):
        await expect(await client.get("/api/health/live"), 200)
    assert (await client.get("/api/widgets/nope/config")).status == 404
    sid = session_id()
    for n in range(2):
        answer = await expect(await client.post("/webchat/message", json={"tenantId": tenant.id, "sessionId": sid,
                                                                          "text": f"m{n}", **tenant.proof(sid)},
                                                headers=tenant.bearer()), 200)
        tenant.keep_secret(sid, answer)
    ws = await client.ws_connect(f"/ws/{session_id()}")
    assert (await recv(ws))["type"] == "connection_status"
    await ws.send_json({"type": "message", "siteKey": tenant.site_key, "text": "over the socket"})
    await until(ws, "ack")
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    parsed = samples(text)
    await ws.close()
    assert value(parsed, "amoiq_http_requests_total", method="GET", route="/api/health/live", status="200") == 3
    assert value(parsed, "amoiq_http_requests_total", method="GET", route="/api/widgets/{site_key}/config",
                 status="404") == 1
    assert value(parsed, "amoiq_http_requests_total", method="POST", route="/webchat/message", status="200") == 2
    assert value(parsed, "amoiq_http_request_duration_seconds_count", method="GET", route="/api/health/live") == 3
    assert value(parsed, "amoiq_messages_stored_total") == 3
    assert value(parsed, "amoiq_writer_batch_size_sum") == 3
    assert value(parsed, "amoiq_writer_batch_seconds_count") == value(parsed, "amoiq_writer_batch_size_count") >= 1
    assert value(parsed, "amoiq_websockets_open", kind="visitor") == 1
    assert value(parsed, "amoiq_ws_frames_received_total", kind="visitor") == 1
    assert value(parsed, "amoiq_ws_frames_sent_total", kind="visitor") >= 3  # connection_status, ack, the message
    assert value(parsed, "amoiq_bus_publishes_total") >= 3
    families = {family.name for family in text_string_to_metric_families(text)}
    assert {"amoiq_bus_deliveries", "amoiq_bus_reconnects", "amoiq_rate_limited", "amoiq_websockets_closed",
            "amoiq_webhook_attempts", "amoiq_assistant_replies", "amoiq_queue_waiting_sessions"} <= families


async def test_metrics_only_for_configured_networks_or_the_token(aiohttp_client, make_app):
    client = await aiohttp_client(make_app(metrics_networks=(ipaddress.ip_network("10.0.0.0/8"),),
                                           metrics_token="scrape-" + "t" * 24))
    resp = await client.get("/metrics")
    assert resp.status == 403 and (await resp.json())["code"] == "FORBIDDEN"
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 403
    resp = await client.get("/metrics", headers={"Authorization": "Bearer scrape-" + "t" * 24})
    assert resp.status == 200 and "amoiq_http_requests_total" in await resp.text()
    client = await aiohttp_client(make_app(metrics_networks=(ipaddress.ip_network("10.0.0.0/8"),)))
    assert (await client.get("/metrics", headers={"Authorization": "Bearer "})).status == 403


async def test_metrics_sum_every_worker_of_serve_workers_2(settings, tmp_path, make_app):
    directory = tmp_path / "metrics"
    server = ServerProcess(settings, "--workers", "2", log=tmp_path / "server.log", PROMETHEUS_MULTIPROC_DIR=str(directory))
    try:
        server.wait()
        app = make_app()  # only for the tenant's rows: the server process shares the database
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            tenant = await _tenant_over_the_pool(app)
            pids = set()
            requests = 0
            while len(pids) < 2 and requests < 200:  # new connections until both workers answered
                resp = await http.get(server.url + "/api/health/ready")
                assert resp.status == 200, await resp.text()
                requests += 1
                pids |= _worker_files(directory)
            assert len(pids) == 2
            sid = session_id()
            for n in range(5):
                resp = await http.post(server.url + "/webchat/message", headers=tenant.bearer(),
                                       json={"tenantId": tenant.id, "sessionId": sid, "text": f"message {n}",
                                             **tenant.proof(sid)})
                assert resp.status == 200, await resp.text()
                tenant.keep_secret(sid, await resp.json())
            resp = await http.get(server.url + "/metrics")
            assert resp.status == 200
            parsed = samples(await resp.text())
        assert value(parsed, "amoiq_http_requests_total", method="GET", route="/api/health/ready",
                     status="200") == requests
        assert value(parsed, "amoiq_http_requests_total", method="POST", route="/webchat/message", status="200") == 5
        assert value(parsed, "amoiq_messages_stored_total") == 5
    finally:
        server.stop()


def _worker_files(directory) -> set[str]:
    """The pids that wrote counters into the multiprocess directory."""
    return {name.rsplit("_", 1)[1].split(".")[0] for name in os.listdir(directory) if name.startswith("counter_")}


async def _tenant_over_the_pool(app):
    from amoiq_chat import db

    settings = app[SETTINGS]
    pool = await db.create_pool(settings.database_url, 1, 1)
    try:
        return await make_tenant(pool, settings)
    finally:
        pool.close()
        await pool.wait_closed()


def test_preparing_this_process_makes_metrics_created_after_it_shared(tmp_path, monkeypatch):
    from prometheus_client import CollectorRegistry, Counter, values

    from amoiq_chat.metrics import MULTIPROC_ENV, prepare_multiprocess

    (tmp_path / "counter_1.db").write_bytes(b"left by an earlier run")
    before = values.ValueClass
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    try:
        assert prepare_multiprocess(os.environ) == str(tmp_path)
        assert not (tmp_path / "counter_1.db").exists()
        Counter("amoiq_test_shared", "a counter made after the directory was named", registry=CollectorRegistry()).inc()
        assert _worker_files(tmp_path) == {str(os.getpid())}
    finally:
        values.ValueClass = before
