"""Migrations: applied in order, once each, recorded; the schema enforces its rules."""
import psycopg2
import pytest

from amoiq_chat import db
from amoiq_chat.settings import with_database


@pytest.fixture
def empty_database(server_urls):
    server = server_urls[0]
    admin = psycopg2.connect(server)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("CREATE DATABASE amoiq_migrate_check")
    try:
        yield with_database(server, "amoiq_migrate_check")
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS amoiq_migrate_check WITH (FORCE)")
        admin.close()


async def test_migrations_apply_once_in_order(empty_database):
    pool = await db.create_pool(empty_database, 1, 2)
    try:
        first = await db.migrate(pool)
        second = await db.migrate(pool)
        async with pool.acquire() as conn:
            recorded = await db.fetch_all(conn, "SELECT version FROM schema_migrations ORDER BY version")
            tables = {r["table_name"] for r in await db.fetch_all(
                conn, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    finally:
        pool.close()
        await pool.wait_closed()
    names = [name for name, _ in db.migration_files()]
    assert first == names and names[0] == "001_schema"
    assert second == []
    assert [r["version"] for r in recorded] == names
    assert {"tenants", "users", "agents", "api_keys", "widget_configs", "sessions", "messages",
            "ratings", "webhooks", "webhook_outbox"} <= tables


def test_schema_refuses_bad_rows(db_conn):
    with db_conn.cursor() as cur:
        cur.execute("INSERT INTO tenants (id, identity_secret) VALUES ('tenant-schema', 's')")
        for bad in ("'#zzzzzz'", "'red'"):
            with pytest.raises(psycopg2.errors.CheckViolation):
                cur.execute("INSERT INTO widget_configs (tenant_id, site_key, business_name, primary_color)"
                            f" VALUES ('tenant-schema', 'widget-bad', 'B', {bad})")
        with pytest.raises(psycopg2.errors.CheckViolation):
            cur.execute("INSERT INTO widget_configs (tenant_id, site_key, business_name, position)"
                        " VALUES ('tenant-schema', 'widget-bad', 'B', 'middle')")
        cur.execute("INSERT INTO sessions (session_id, tenant_id) VALUES ('s-schema-1', 'tenant-schema')")
        cur.execute("INSERT INTO messages (id, tenant_id, session_id, seq, sender_type, message)"
                    " VALUES (gen_random_uuid(), 'tenant-schema', 's-schema-1', 1, 'visitor', 'hi')")
        with pytest.raises(psycopg2.errors.UniqueViolation):
            cur.execute("INSERT INTO messages (id, tenant_id, session_id, seq, sender_type, message)"
                        " VALUES (gen_random_uuid(), 'tenant-schema', 's-schema-1', 1, 'visitor', 'again')")
        with pytest.raises(psycopg2.errors.CheckViolation):
            cur.execute("INSERT INTO messages (id, tenant_id, session_id, seq, sender_type, message)"
                        " VALUES (gen_random_uuid(), 'tenant-schema', 's-schema-1', 2, 'robot', 'x')")
        with pytest.raises(psycopg2.errors.CheckViolation):  # a job with neither a message nor a payload
            cur.execute("INSERT INTO webhook_outbox (tenant_id, event) VALUES ('tenant-schema', 'message.created')")
        cur.execute("INSERT INTO widget_configs (tenant_id, site_key, business_name) VALUES ('tenant-schema', 'widget-schema', 'B')")
        cur.execute("INSERT INTO sessions (session_id, tenant_id, site_key) VALUES"
                    " ('s-schema-2', 'tenant-schema', NULL), ('s-schema-3', 'tenant-schema', 'widget-schema')")
        cur.execute("INSERT INTO messages (id, tenant_id, session_id, seq, sender_type, message)"
                    " VALUES (gen_random_uuid(), 'tenant-schema', 's-schema-2', 1, 'visitor', 'two'),"
                    " (gen_random_uuid(), 'tenant-schema', 's-schema-3', 1, 'visitor', 'three')")
        cur.execute("INSERT INTO webhook_outbox (tenant_id, message_id, event)"
                    " SELECT tenant_id, id, 'message.created' FROM messages WHERE tenant_id = 'tenant-schema'")

        def left() -> list[tuple[str, int]]:  # (session, outbox rows of its messages) of each message left
            cur.execute("SELECT m.session_id, count(o.id) FROM messages m LEFT JOIN webhook_outbox o ON o.message_id = m.id"
                        " WHERE m.tenant_id = 'tenant-schema' GROUP BY m.session_id ORDER BY m.session_id")
            return cur.fetchall()

        assert left() == [("s-schema-1", 1), ("s-schema-2", 1), ("s-schema-3", 1)]
        cur.execute("DELETE FROM sessions WHERE session_id = 's-schema-2'")  # its messages and their jobs go too
        assert left() == [("s-schema-1", 1), ("s-schema-3", 1)]
        cur.execute("DELETE FROM widget_configs WHERE site_key = 'widget-schema'")  # its sessions, their messages, jobs
        assert left() == [("s-schema-1", 1)]
        cur.execute("SELECT count(*) FROM webhook_outbox WHERE tenant_id = 'tenant-schema'")
        assert cur.fetchone() == (1,)
        cur.execute("DELETE FROM tenants WHERE id = 'tenant-schema'")
        cur.execute("SELECT (SELECT count(*) FROM messages WHERE tenant_id = 'tenant-schema'),"
                    " (SELECT count(*) FROM webhook_outbox WHERE tenant_id = 'tenant-schema')")
        assert cur.fetchone() == (0, 0)
