"""GET /api/health: the seed's fields, service states, and 503 when a service is down."""
from amoiq_chat.appkeys import WRITER
from amoiq_chat.settings import RateLimit


async def test_health_reports_services_up(client):
    resp = await client.get("/api/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["success"] is True
    assert body["message"] == "Chat Widget API is running"
    for field in ("timestamp", "environment", "domain", "apiUrl", "wsUrl"):
        assert body[field]
    assert body["timestamp"].endswith("Z")
    assert body["apiUrl"].endswith("/api") and body["wsUrl"].startswith("ws://")
    assert body["services"]["postgres"]["status"] == "up"
    assert body["services"]["redis"]["status"] == "up"
    assert "X-RateLimit-Limit" not in resp.headers


async def test_health_is_503_when_redis_stops(aiohttp_client, make_app, redis_server):
    url, process = redis_server
    client = await aiohttp_client(make_app(redis_url=url, rate_limit_http=RateLimit(1000, 60)))
    assert (await client.get("/api/health")).status == 200
    process.terminate()
    process.wait(10)
    resp = await client.get("/api/health")
    assert resp.status == 503
    body = await resp.json()
    assert body["success"] is False and body["code"] == "SERVICE_UNAVAILABLE"
    assert body["services"]["redis"]["status"] == "down"
    assert body["services"]["postgres"]["status"] == "up"
    # Other routes keep answering (the rate limiter lets requests through while Redis is down).
    assert (await client.get("/api/unknown")).status == 404


async def test_live_answers_without_touching_the_services(client):
    resp = await client.get("/api/health/live")
    assert resp.status == 200
    body = await resp.json()
    assert body["success"] is True and body["status"] == "up" and body["uptimeSeconds"] >= 0
    assert "X-RateLimit-Limit" not in resp.headers


async def test_ready_names_postgres_redis_and_each_worker(client):
    resp = await client.get("/api/health/ready")
    assert resp.status == 200
    body = await resp.json()
    assert body["success"] is True and body["status"] == "ready"
    checks = body["checks"]
    assert checks["postgres"]["status"] == checks["redis"]["status"] == "up"
    assert checks["workers"] == {"status": "up", "running": ["bus", "heartbeat", "presence", "writer"]}


async def test_ready_is_503_when_a_worker_stopped(client):
    await client.app[WRITER].stop()
    resp = await client.get("/api/health/ready")
    assert resp.status == 503
    body = await resp.json()
    assert body["success"] is False and body["status"] == "not ready" and body["code"] == "SERVICE_UNAVAILABLE"
    assert body["checks"]["workers"] == {"status": "down", "error": "not running: writer"}
    assert (await client.get("/api/health/live")).status == 200


async def test_ready_is_503_when_redis_stops_while_live_stays_up(aiohttp_client, make_app, redis_server):
    url, process = redis_server
    client = await aiohttp_client(make_app(redis_url=url, rate_limit_http=RateLimit(1000, 60)))
    assert (await client.get("/api/health/ready")).status == 200
    process.terminate()
    process.wait(10)
    resp = await client.get("/api/health/ready")
    assert resp.status == 503
    body = await resp.json()
    assert body["checks"]["redis"]["status"] == "down" and body["checks"]["postgres"]["status"] == "up"
    assert (await client.get("/api/health/live")).status == 200
