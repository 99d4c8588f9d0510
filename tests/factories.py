"""Test helpers: tenants, admins, agents and widgets made through the API; chat rows made in SQL."""
from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

PASSWORD = "correct-horse-battery"


def unique(prefix: str) -> str:
    """A name no other test uses, e.g. `admin_3fa2c1d0`."""
    return f"{prefix}_{secrets.token_hex(4)}"


def bearer(credential: str) -> dict[str, str]:
    """The Authorization header for a token or an API key."""
    return {"Authorization": f"Bearer {credential}"}


@dataclass
class Account:
    """Someone who logged in: an admin or an agent."""

    id: int
    tenant_id: str
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """Authorization with the account's token."""
        return bearer(self.token)


@dataclass
class Admin(Account):
    """A registered admin with their tenant's first keys."""

    publishable_key: str = ""
    secret_key: str = ""
    body: dict = field(default_factory=dict, repr=False)


@dataclass
class Agent(Account):
    """An agent created by an admin and logged in."""

    row: dict = field(default_factory=dict, repr=False)


async def expect(resp, status: int) -> Any:
    """Assert the status (showing the body when it differs) and return the JSON body."""
    text = await resp.text()
    assert resp.status == status, f"{resp.status} != {status}: {text}"
    return await resp.json() if text else None


async def register_admin(client, **overrides: Any) -> Admin:
    """POST /api/auth/register with a fresh username and e-mail."""
    name = unique("admin")
    payload = {"username": name, "email": f"{name}@example.com", "password": PASSWORD, **overrides}
    body = await expect(await client.post("/api/auth/register", json=payload), 201)
    data = body["data"]
    return Admin(id=data["user"]["id"], tenant_id=data["tenant"]["id"], email=payload["email"],
                 password=payload["password"], token=data["token"], publishable_key=data["tenant"]["publishableKey"],
                 secret_key=data["tenant"]["secretKey"], body=body)


async def create_agent(client, admin: Admin, **overrides: Any) -> Agent:
    """POST /api/agents as the admin, then log the agent in."""
    name = unique("agent")
    payload = {"username": name, "email": f"{name}@example.com", "password": PASSWORD,
               "full_name": "Support Agent", **overrides}
    row = (await expect(await client.post("/api/agents", json=payload, headers=admin.headers), 201))["data"]["agent"]
    login = await client.post("/api/auth/agent-login", json={"email": payload["email"], "password": payload["password"]})
    token = (await expect(login, 200))["data"]["token"] if row["is_active"] else ""
    return Agent(id=row["id"], tenant_id=admin.tenant_id, email=payload["email"], password=payload["password"],
                 token=token, row=row)


async def create_widget(client, admin: Admin, **fields: Any) -> dict:
    """POST /api/widgets as the admin; return the widget as answered."""
    payload = {"business_name": "Acme Corp", **fields}
    return (await expect(await client.post("/api/widgets", json=payload, headers=admin.headers), 201))["data"]["widget"]


# Chat rows for stats: written straight into the tables the chat code owns.

def insert_session(db_conn, tenant_id: str, site_key: str | None, **columns: Any) -> str:
    """Insert a sessions row; return its session_id."""
    values = {"session_id": unique("session"), "tenant_id": tenant_id, "site_key": site_key, **columns}
    with db_conn.cursor() as cur:
        cur.execute(f"INSERT INTO sessions ({', '.join(values)}) VALUES ({', '.join(['%s'] * len(values))})",
                    list(values.values()))
    return values["session_id"]


def insert_messages(db_conn, tenant_id: str, session_id: str, *messages: tuple[str, float, str | None]) -> None:
    """Insert (sender_type, seconds after a fixed start, sender_id) messages with seq 1, 2, ..."""
    start = dt.datetime(2024, 1, 15, 10, 30, tzinfo=dt.timezone.utc)
    with db_conn.cursor() as cur:
        for seq, (sender_type, seconds, sender_id) in enumerate(messages, start=1):
            cur.execute(
                "INSERT INTO messages (id, tenant_id, session_id, seq, sender_type, sender_id, message, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (str(uuid.uuid4()), tenant_id, session_id, seq, sender_type, sender_id, f"message {seq}",
                 start + dt.timedelta(seconds=seconds)))
        cur.execute("UPDATE sessions SET last_seq = %s WHERE session_id = %s", (len(messages), session_id))


def insert_rating(db_conn, tenant_id: str, session_id: str, rating: int, agent_id: int | None = None) -> None:
    """Insert a ratings row."""
    with db_conn.cursor() as cur:
        cur.execute("INSERT INTO ratings (tenant_id, session_id, agent_id, rating) VALUES (%s, %s, %s, %s)",
                    (tenant_id, session_id, agent_id, rating))


def fetch(db_conn, sql: str, *params: Any) -> list[tuple]:
    """Rows of a query, for asserting what is stored."""
    with db_conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


async def expect_error(resp, status: int, code: str, field: str | None = None) -> dict:
    """Assert an error envelope with this status and code (and naming `field`); return the body."""
    body = await expect(resp, status)
    assert body["success"] is False and body["code"] == code, body
    assert body["message"] == body["error"] and isinstance(body["details"], dict)
    if field is not None:
        assert field in body["errors"], body
    return body
