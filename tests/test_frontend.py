"""The front ends over HTTP: /widget.js (size, version, ETag, caching, any origin), /console (its policy,
CORS_ORIGINS), /demo and the URL `serve` prints for it."""
from __future__ import annotations

import re
import subprocess

import psycopg2
import pytest

from amoiq_chat.cli import demo_urls
from amoiq_chat.settings import with_database

from .conftest import CLI, cli_env, free_port
from .factories import expect_error

WIDGET_BUDGET = 40 * 1024


async def test_widget_js_is_small_versioned_and_cacheable(client):
    resp = await client.get("/widget.js", headers={"Origin": "https://shop.example"})
    body = await resp.read()
    assert resp.status == 200 and resp.content_type == "application/javascript"
    assert len(body) < WIDGET_BUDGET, f"widget.js is {len(body)} bytes"
    version = resp.headers["X-Amoiq-Version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+-[0-9a-f]{12}", version)
    assert resp.headers["ETag"] == f'"{version}"' and f'var VERSION = "{version}"'.encode() in body
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    assert resp.headers["Access-Control-Allow-Origin"] in ("*", "https://shop.example")

    again = await client.get("/widget.js", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304 and await again.read() == b"" and again.headers["ETag"] == resp.headers["ETag"]
    pinned = await client.get(f"/widget.js?v={version}")
    assert pinned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    stale = await client.get("/widget.js?v=0.0.0-000000000000")  # an old pinned URL is not cached for ever
    assert stale.headers["Cache-Control"] == "public, max-age=300" and await stale.read() == body


async def test_console_page_and_its_files(aiohttp_client, make_app):
    client = await aiohttp_client(make_app(cors_origins=("https://admin.example",)))
    page = await client.get("/console")
    html = await page.text()
    assert page.status == 200 and page.content_type == "text/html"
    assert '<script src="/console.js" defer></script>' in html and 'id="login-form"' in html
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'self' https://admin.example" in policy
    assert "'unsafe-inline'" not in policy
    for name, kind in (("/console.js", "application/javascript"), ("/console.css", "text/css")):
        resp = await client.get(name, headers={"Origin": "https://admin.example"})
        assert resp.status == 200 and resp.content_type == kind and resp.headers["ETag"]
        assert resp.headers["Access-Control-Allow-Origin"] == "https://admin.example"
    foreign = await client.get("/console.js", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in foreign.headers


async def test_demo_page_needs_the_demo_data(client):
    await expect_error(await client.get("/demo"), 404, "NOT_FOUND")  # the test settings turn the demo off


def test_demo_urls_name_a_reachable_host(settings):
    assert demo_urls(settings.replace(host="0.0.0.0", port=5000)) == (
        "Demo page (the demo widget on a web page): http://127.0.0.1:5000/demo\n"
        "Agent console: http://127.0.0.1:5000/console")


@pytest.fixture
def empty_database(settings):
    """A database of its own, empty, so that `serve` makes the demo data; dropped afterwards."""
    name = f"amoiq_test_demo_{free_port()}"
    admin = psycopg2.connect(settings.database_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield with_database(settings.database_url, name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


async def test_serve_prints_the_demo_page_which_embeds_the_demo_widget(settings, empty_database, aiohttp_client, make_app):
    port = free_port()
    env = cli_env(settings, DATABASE_URL=empty_database, SEED_DEMO="1", LOG_LEVEL="WARNING")
    process = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in process.stdout:  # the process prints its summary and URLs, then serves
            lines.append(line)
            if line.startswith("Agent console:"):
                break
    finally:
        process.terminate()
        process.wait(30)
        process.stdout.close()
        process.stderr.close()
    printed = "".join(lines)
    assert f"Demo page (the demo widget on a web page): http://127.0.0.1:{port}/demo" in printed
    site_key = re.search(r"widget siteKey\s+(widget-\S+)", printed).group(1)
    publishable = re.search(r"publishable key\s+(pk_\S+)", printed).group(1)

    client = await aiohttp_client(make_app(database_url=empty_database, seed_demo=True))
    page = await client.get("/demo")
    html = await page.text()
    assert page.status == 200 and page.headers["Cache-Control"] == "no-store"
    version = (await client.get("/widget.js")).headers["X-Amoiq-Version"]
    assert (f'<script src="/widget.js?v={version}" data-site-key="{site_key}" data-key="{publishable}" async></script>'
            in html)
