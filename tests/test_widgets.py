"""Widgets: create, list with stats and pagination, read, partial update, delete, public config, stats."""
import pytest

from amoiq_chat.appkeys import PUBLIC_WIDGETS
from amoiq_chat.services.widgets import PUBLIC_TTL

from .factories import (bearer, create_widget, expect, expect_error, fetch, insert_messages, insert_rating,
                        insert_session, register_admin)

SEED_CREATE = {
    "business_name": "New Business", "widget_title": "Chat Support", "welcome_message": "Welcome! How can we assist you?",
    "primary_color": "#ff6b6b", "secondary_color": "#4ecdc4", "position": "bottom-left", "enable_prechat_form": True,
    "prechat_fields": [{"name": "name", "label": "Your Name", "type": "text", "required": True},
                       {"name": "email", "label": "Email Address", "type": "email", "required": True}],
}
WIDGET_FIELDS = {"id", "site_key", "business_name", "widget_title", "welcome_message", "primary_color",
                 "secondary_color", "position", "enable_prechat_form", "prechat_fields", "created_at", "is_active",
                 "allowed_domains", "faq", "updated_at"}


def count_widgets(db_conn, tenant_id):
    return fetch(db_conn, "SELECT count(*) FROM widget_configs WHERE tenant_id = %s", tenant_id)[0][0]


async def test_create_widget_with_the_seed_body(client, db_conn):
    admin = await register_admin(client)
    body = await expect(await client.post("/api/widgets", json=SEED_CREATE, headers=admin.headers), 201)
    assert body["success"] is True and body["message"] == "Widget created successfully"
    widget = body["data"]["widget"]
    assert set(widget) == WIDGET_FIELDS
    assert widget["site_key"].startswith("widget-")
    assert {k: widget[k] for k in SEED_CREATE} == SEED_CREATE
    assert widget["is_active"] is True and widget["allowed_domains"] == [] and widget["faq"] == []
    assert widget["created_at"].endswith("Z")
    assert fetch(db_conn, "SELECT tenant_id, user_id, business_name FROM widget_configs WHERE site_key = %s",
                 widget["site_key"]) == [(admin.tenant_id, admin.id, "New Business")]


async def test_create_widget_with_the_curl_example_takes_the_defaults(client):
    admin = await register_admin(client)
    resp = await client.post("/api/widgets", json={"business_name": "Test Business", "widget_title": "Test Chat",
                                                   "primary_color": "#ff0000"}, headers=admin.headers)
    widget = (await expect(resp, 201))["data"]["widget"]
    assert (widget["welcome_message"], widget["secondary_color"], widget["position"], widget["enable_prechat_form"],
            widget["prechat_fields"]) == ("Hello! How can we help you today?", "#6c757d", "bottom-right", False, [])


async def test_create_widget_with_faq_domains_and_select_field(client):
    admin = await register_admin(client)
    widget = await create_widget(client, admin, allowed_domains=["Shop.Example.com", "*.example.org"],
                                 faq=[{"keywords": ["price", "cost"], "answer": "From $10."}],
                                 prechat_fields=[{"name": "topic", "type": "select", "options": ["Sales", "Support"]}])
    assert widget["allowed_domains"] == ["shop.example.com", "*.example.org"]
    assert widget["faq"] == [{"keywords": ["price", "cost"], "answer": "From $10."}]
    assert widget["prechat_fields"] == [{"name": "topic", "label": "topic", "type": "select", "required": False,
                                         "options": ["Sales", "Support"]}]


BAD_WIDGETS = [
    ({"business_name": None}, "business_name"),
    ({"business_name": ""}, "business_name"),
    ({"business_name": "x" * 256}, "business_name"),
    ({"business_name": 12}, "business_name"),
    ({"welcome_message": "w" * 2001}, "welcome_message"),
    ({"primary_color": "#fff"}, "primary_color"),
    ({"secondary_color": "red"}, "secondary_color"),
    ({"position": "middle"}, "position"),
    ({"enable_prechat_form": "true"}, "enable_prechat_form"),
    ({"is_active": 1}, "is_active"),
    ({"prechat_fields": {"name": "x"}}, "prechat_fields"),
    ({"prechat_fields": [{"name": "x", "type": "radio"}]}, "prechat_fields.0.type"),
    ({"prechat_fields": [{"type": "text"}]}, "prechat_fields.0.name"),
    ({"prechat_fields": [{"name": "x", "type": "select"}]}, "prechat_fields.0.options"),
    ({"prechat_fields": [{"name": "x", "type": "text", "required": "yes"}]}, "prechat_fields.0.required"),
    ({"prechat_fields": [{"name": "x", "type": "text", "color": "#000000"}]}, "prechat_fields.0.color"),
    ({"prechat_fields": [{"name": "x", "type": "text"}, {"name": "x", "type": "email"}]}, "prechat_fields"),
    ({"prechat_fields": [{"name": f"f{i}", "type": "text"} for i in range(21)]}, "prechat_fields"),
    ({"allowed_domains": ["https://shop.example.com"]}, "allowed_domains.0"),
    ({"allowed_domains": "example.com"}, "allowed_domains"),
    ({"faq": [{"keywords": [], "answer": "a"}]}, "faq.0.keywords"),
    ({"faq": [{"keywords": ["a"]}]}, "faq.0.answer"),
    ({"faq": [{"keywords": ["a"], "answer": "b"}] * 101}, "faq"),
    ({"site_key": "widget-mine"}, "site_key"),
    ({"tenant_id": "tenant-other"}, "tenant_id"),
]


@pytest.mark.parametrize("change, field", BAD_WIDGETS)
async def test_create_widget_validation_names_the_field_and_writes_nothing(client, db_conn, change, field):
    admin = await register_admin(client)
    payload = {k: v for k, v in {**SEED_CREATE, **change}.items() if v is not None}
    await expect_error(await client.post("/api/widgets", json=payload, headers=admin.headers), 400,
                       "VALIDATION_ERROR", field)
    assert count_widgets(db_conn, admin.tenant_id) == 0


async def test_get_widget(client):
    admin = await register_admin(client)
    widget = await create_widget(client, admin, **SEED_CREATE)
    body = await expect(await client.get(f"/api/widgets/{widget['site_key']}", headers=admin.headers), 200)
    assert body == {"success": True, "data": {"widget": widget}}


@pytest.mark.parametrize("site_key", ["widget-unknown", "w" * 300])
async def test_unknown_widget_is_404_with_the_seed_message(client, site_key):
    admin = await register_admin(client)
    body = await expect_error(await client.get(f"/api/widgets/{site_key}", headers=admin.headers), 404,
                              "WIDGET_NOT_FOUND")
    assert body["message"].startswith("Widget not found for site key: ")
    for method in ("PUT", "DELETE"):
        await expect_error(await client.request(method, f"/api/widgets/{site_key}", json={"widget_title": "x"},
                                                headers=admin.headers), 404, "WIDGET_NOT_FOUND")
    await expect_error(await client.get(f"/api/widgets/{site_key}/config"), 404, "WIDGET_NOT_FOUND")


async def test_list_widgets_pages_newest_first_with_stats(client):
    admin = await register_admin(client)
    made = [await create_widget(client, admin, business_name=f"Business {i}") for i in range(3)]
    first = (await expect(await client.get("/api/widgets?page=1&limit=2", headers=admin.headers), 200))["data"]
    assert [w["site_key"] for w in first["widgets"]] == [made[2]["site_key"], made[1]["site_key"]]
    assert first["pagination"] == {"page": 1, "limit": 2, "total": 3}
    assert first["stats"] == {"total_widgets": 3, "active_widgets": 3, "inactive_widgets": 0, "total_chats": 0,
                              "total_messages": 0, "average_response_time": None, "customer_satisfaction": None}
    second = (await expect(await client.get("/api/widgets?page=2&limit=2", headers=admin.headers), 200))["data"]
    assert [w["site_key"] for w in second["widgets"]] == [made[0]["site_key"]]
    default = (await expect(await client.get("/api/widgets", headers=admin.headers), 200))["data"]
    assert default["pagination"] == {"page": 1, "limit": 50, "total": 3} and len(default["widgets"]) == 3


@pytest.mark.parametrize("query, field", [("page=abc", "page"), ("page=0", "page"), ("limit=0", "limit"),
                                          ("limit=101", "limit"), ("limit=2.5", "limit")])
async def test_list_widgets_bad_paging_is_400(client, query, field):
    admin = await register_admin(client)
    await expect_error(await client.get(f"/api/widgets?{query}", headers=admin.headers), 400, "VALIDATION_ERROR", field)


async def test_update_widget_partially_with_the_seed_body(client, db_conn):
    admin = await register_admin(client)
    widget = await create_widget(client, admin, **SEED_CREATE)
    resp = await client.put(f"/api/widgets/{widget['site_key']}", headers=admin.headers,
                            json={"widget_title": "Updated Chat Title", "primary_color": "#00ff00", "is_active": False})
    body = await expect(resp, 200)
    assert body["message"] == "Widget updated successfully"
    updated = body["data"]["widget"]
    assert updated == {**widget, "widget_title": "Updated Chat Title", "primary_color": "#00ff00", "is_active": False,
                       "updated_at": updated["updated_at"]}
    assert fetch(db_conn, "SELECT widget_title, primary_color, is_active, business_name FROM widget_configs"
                          " WHERE site_key = %s", widget["site_key"]) == [
        ("Updated Chat Title", "#00ff00", False, "New Business")]


async def test_update_replaces_lists_whole(client):
    admin = await register_admin(client)
    widget = await create_widget(client, admin, **SEED_CREATE)
    resp = await client.put(f"/api/widgets/{widget['site_key']}", headers=admin.headers,
                            json={"prechat_fields": [{"name": "phone", "type": "tel", "required": False}]})
    assert (await expect(resp, 200))["data"]["widget"]["prechat_fields"] == [
        {"name": "phone", "label": "phone", "type": "tel", "required": False}]


@pytest.mark.parametrize("change, field", [({}, "body")] + [(c, f) for c, f in BAD_WIDGETS if None not in c.values()])
async def test_update_widget_validation_changes_nothing(client, db_conn, change, field):
    admin = await register_admin(client)
    widget = await create_widget(client, admin, **SEED_CREATE)
    before = fetch(db_conn, "SELECT * FROM widget_configs WHERE site_key = %s", widget["site_key"])
    await expect_error(await client.put(f"/api/widgets/{widget['site_key']}", json=change, headers=admin.headers), 400,
                       "VALIDATION_ERROR", field)
    assert fetch(db_conn, "SELECT * FROM widget_configs WHERE site_key = %s", widget["site_key"]) == before


async def test_delete_widget(client, db_conn):
    admin = await register_admin(client)
    widget = await create_widget(client, admin)
    await expect(await client.get(f"/api/widgets/{widget['site_key']}/config"), 200)  # kept by this process
    body = await expect(await client.delete(f"/api/widgets/{widget['site_key']}", headers=admin.headers), 200)
    assert body == {"success": True, "message": "Widget deleted successfully"}
    assert count_widgets(db_conn, admin.tenant_id) == 0
    await expect_error(await client.get(f"/api/widgets/{widget['site_key']}", headers=admin.headers), 404,
                       "WIDGET_NOT_FOUND")
    await expect_error(await client.get(f"/api/widgets/{widget['site_key']}/config"), 404, "WIDGET_NOT_FOUND")


# The public configuration -------------------------------------------------------------------

async def test_config_is_public_camel_case_with_site_key_and_tenant(client):
    admin = await register_admin(client)
    widget = await create_widget(client, admin, **SEED_CREATE, faq=[{"keywords": ["x"], "answer": "private"}])
    resp = await client.get(f"/api/widgets/{widget['site_key']}/config")
    assert await expect(resp, 200) == {
        "businessName": "New Business", "widgetTitle": "Chat Support", "welcomeMessage": "Welcome! How can we assist you?",
        "primaryColor": "#ff6b6b", "secondaryColor": "#4ecdc4", "position": "bottom-left", "enablePrechatForm": True,
        "prechatFields": SEED_CREATE["prechat_fields"], "siteKey": widget["site_key"], "tenantId": admin.tenant_id,
    }
    assert resp.headers["Cache-Control"] == "public, max-age=60" and resp.headers["ETag"]


async def test_config_answers_304_while_unchanged(client):
    admin = await register_admin(client)
    widget = await create_widget(client, admin)
    url = f"/api/widgets/{widget['site_key']}/config"
    etag = (await client.get(url)).headers["ETag"]
    same = await client.get(url, headers={"If-None-Match": etag})
    assert same.status == 304 and await same.read() == b"" and same.headers["ETag"] == etag
    await expect(await client.put(f"/api/widgets/{widget['site_key']}", json={"widget_title": "New"},
                                  headers=admin.headers), 200)
    changed = await client.get(url, headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
    assert (await changed.json())["widgetTitle"] == "New"


async def test_config_follows_changes_at_once_here_and_within_seconds_elsewhere(client, db_conn):
    now = [0.0]
    client.app[PUBLIC_WIDGETS].clock = lambda: now[0]  # the kept rows' clock
    admin = await register_admin(client)
    widget = await create_widget(client, admin)
    url = f"/api/widgets/{widget['site_key']}/config"
    await expect(await client.get(url), 200)
    await expect(await client.put(f"/api/widgets/{widget['site_key']}", json={"is_active": False},
                                  headers=admin.headers), 200)
    await expect_error(await client.get(url), 404, "WIDGET_NOT_FOUND")  # changed through this process: at once
    with db_conn.cursor() as cur:  # changed through another process (here: in the database)
        cur.execute("UPDATE widget_configs SET is_active = true, widget_title = 'Elsewhere' WHERE site_key = %s",
                    (widget["site_key"],))
    now[0] += PUBLIC_TTL - 0.1
    await expect_error(await client.get(url), 404, "WIDGET_NOT_FOUND")  # this process still has the row it read
    now[0] += 0.1
    assert (await expect(await client.get(url), 200))["widgetTitle"] == "Elsewhere"  # within PUBLIC_TTL s


async def test_config_of_inactive_widget_is_404(client):
    admin = await register_admin(client)
    widget = await create_widget(client, admin, is_active=False)
    await expect_error(await client.get(f"/api/widgets/{widget['site_key']}/config"), 404, "WIDGET_NOT_FOUND")


async def test_config_answers_any_origin_when_no_domains_are_listed(client):
    admin = await register_admin(client)
    widget = await create_widget(client, admin)
    resp = await client.get(f"/api/widgets/{widget['site_key']}/config", headers={"Origin": "https://customer.test"})
    await expect(resp, 200)
    assert resp.headers["Access-Control-Allow-Origin"] in ("*", "https://customer.test")


@pytest.mark.parametrize("origin, status", [("https://shop.example.com", 200), ("https://a.example.org", 200),
                                            ("https://evil.test", 403), ("https://example.org", 403),
                                            ("https://shop.example.com.evil.test", 403), (None, 200)])
async def test_config_honours_allowed_domains(client, origin, status):
    admin = await register_admin(client)
    widget = await create_widget(client, admin, allowed_domains=["shop.example.com", "*.example.org"])
    headers = {"Origin": origin} if origin else {}
    await expect(await client.get(f"/api/widgets/{widget['site_key']}/config", headers=headers), status)


# Stats ---------------------------------------------------------------------------------------

async def test_stats_overview_is_null_without_data(client):
    admin = await register_admin(client)
    body = await expect(await client.get("/api/widgets/stats/overview", headers=admin.headers), 200)
    assert body == {"success": True, "data": {"stats": {
        "total_widgets": 0, "active_widgets": 0, "inactive_widgets": 0, "total_chats": 0, "total_messages": 0,
        "average_response_time": None, "customer_satisfaction": None}}}


async def test_stats_come_from_stored_rows(client, db_conn):
    admin = await register_admin(client)
    live = await create_widget(client, admin)
    await create_widget(client, admin, is_active=False)
    tenant = admin.tenant_id
    # Replies after 30 s (AI) and 150 s (agent); a visitor message nobody answered yet does not count.
    s1 = insert_session(db_conn, tenant, live["site_key"])
    insert_messages(db_conn, tenant, s1, ("visitor", 0, None), ("ai", 30, None), ("visitor", 40, None),
                    ("agent", 190, "1"), ("visitor", 200, None))
    s2 = insert_session(db_conn, tenant, live["site_key"])
    insert_messages(db_conn, tenant, s2, ("system", 0, None))
    insert_session(db_conn, tenant, live["site_key"])  # no message: not a chat
    insert_rating(db_conn, tenant, s1, 4)
    insert_rating(db_conn, tenant, s2, 5)
    # Another tenant's rows change nothing here.
    other = await register_admin(client)
    s3 = insert_session(db_conn, other.tenant_id, None)
    insert_messages(db_conn, other.tenant_id, s3, ("visitor", 0, None), ("ai", 6000, None))
    insert_rating(db_conn, other.tenant_id, s3, 1)

    stats = (await expect(await client.get("/api/widgets/stats/overview", headers=admin.headers), 200))["data"]["stats"]
    assert stats == {"total_widgets": 2, "active_widgets": 1, "inactive_widgets": 1, "total_chats": 2,
                     "total_messages": 6, "average_response_time": "1.5 min", "customer_satisfaction": 4.5}
    listed = (await expect(await client.get("/api/widgets", headers=bearer(admin.secret_key)), 200))["data"]
    assert listed["stats"] == stats


async def test_allowed_domains_take_a_port_for_local_development(client):
    admin = await register_admin(client)
    widget = await create_widget(client, admin, allowed_domains=["localhost:3000", "127.0.0.1:8089", "Dev.Example.com"])
    assert widget["allowed_domains"] == ["localhost:3000", "127.0.0.1:8089", "dev.example.com"]
    config = f"/api/widgets/{widget['site_key']}/config"
    for origin, status in [("http://localhost:3000", 200), ("http://127.0.0.1:8089", 200),
                           ("http://localhost:3001", 403), ("http://localhost", 403), ("http://127.0.0.1:3000", 403),
                           ("https://dev.example.com:8443", 200), ("http://localhost:99999", 403)]:
        resp = await client.get(config, headers={"Origin": origin})
        assert resp.status == status, origin
    for bad in (["localhost:0"], ["localhost:65536"], ["localhost:"], ["http://localhost:3000"], ["a:b"]):
        await expect_error(await client.put(f"/api/widgets/{widget['site_key']}", json={"allowed_domains": bad},
                                            headers=admin.headers), 400, "VALIDATION_ERROR", "allowed_domains.0")
