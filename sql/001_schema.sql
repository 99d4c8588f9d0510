-- amoiq-chat schema: the seed's MySQL tables in PostgreSQL, with tenants, API keys,
-- webhooks, ratings and the indexes the routes use.

CREATE TABLE tenants (
    id                     TEXT PRIMARY KEY,            -- tenant-<random>
    name                   VARCHAR(255) NOT NULL DEFAULT '',
    identity_verification  BOOLEAN NOT NULL DEFAULT FALSE,
    identity_secret        TEXT NOT NULL,               -- HMAC key for userHash; kept, not hashed
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Admins (the seed's `users`): each owns one tenant.
CREATE TABLE users (
    id             BIGSERIAL PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    username       VARCHAR(100) NOT NULL,
    email          VARCHAR(255) NOT NULL,
    password       TEXT NOT NULL,                       -- argon2id hash
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_tenant_idx ON users (tenant_id);

CREATE TABLE agents (
    id             BIGSERIAL PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    username       VARCHAR(100) NOT NULL,
    email          VARCHAR(255) NOT NULL,
    password_hash  TEXT NOT NULL,                       -- argon2id hash
    full_name      VARCHAR(255) NOT NULL,
    is_online      BOOLEAN NOT NULL DEFAULT FALSE,
    last_active    TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    is_active      BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE UNIQUE INDEX agents_username_key ON agents (lower(username));
CREATE UNIQUE INDEX agents_email_key ON agents (lower(email));
CREATE INDEX agents_tenant_idx ON agents (tenant_id);

CREATE TABLE api_keys (
    id             BIGSERIAL PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('publishable', 'secret')),
    name           VARCHAR(100) NOT NULL DEFAULT '',
    prefix         TEXT NOT NULL,                       -- first characters, to recognise a key in lists
    key_hash       TEXT NOT NULL UNIQUE,                -- sha256 hex of the whole key
    public_key     TEXT,                                -- the whole key, publishable keys only
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at   TIMESTAMPTZ,
    revoked_at     TIMESTAMPTZ
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id);

CREATE TABLE widget_configs (
    id                   BIGSERIAL PRIMARY KEY,
    tenant_id            TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id              BIGINT REFERENCES users(id) ON DELETE SET NULL,
    site_key             VARCHAR(255) NOT NULL UNIQUE,  -- widget-<random>
    business_name        VARCHAR(255) NOT NULL,
    widget_title         VARCHAR(255) NOT NULL DEFAULT 'Chat with us',
    welcome_message      TEXT NOT NULL DEFAULT 'Hello! How can we help you today?',
    primary_color        VARCHAR(7) NOT NULL DEFAULT '#007bff' CHECK (primary_color ~ '^#[0-9A-Fa-f]{6}$'),
    secondary_color      VARCHAR(7) NOT NULL DEFAULT '#6c757d' CHECK (secondary_color ~ '^#[0-9A-Fa-f]{6}$'),
    position             TEXT NOT NULL DEFAULT 'bottom-right'
                         CHECK (position IN ('bottom-right', 'bottom-left', 'top-right', 'top-left')),
    enable_prechat_form  BOOLEAN NOT NULL DEFAULT FALSE,
    prechat_fields       JSONB NOT NULL DEFAULT '[]',
    allowed_domains      JSONB NOT NULL DEFAULT '[]',   -- ["example.com", ...]; empty = any
    faq                  JSONB NOT NULL DEFAULT '[]',   -- [{"keywords": [...], "answer": "..."}]
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    is_active            BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE INDEX widget_configs_tenant_idx ON widget_configs (tenant_id, id);

-- A conversation. `status`: active (with the assistant or an agent), waiting (escalated, in
-- the queue), closed. The queue is waiting sessions ordered by escalated_at.
CREATE TABLE sessions (
    id                 BIGSERIAL PRIMARY KEY,
    session_id         VARCHAR(128) NOT NULL UNIQUE,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    site_key           VARCHAR(255) REFERENCES widget_configs(site_key) ON DELETE CASCADE,
    user_id            VARCHAR(255),                    -- the tenant's own id of a logged-in visitor
    fingerprint        VARCHAR(255),
    visitor_name       VARCHAR(255),
    visitor_email      VARCHAR(255),
    visitor_info       JSONB NOT NULL DEFAULT '{}',
    status             TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('waiting', 'active', 'closed')),
    assigned_agent_id  BIGINT REFERENCES agents(id) ON DELETE SET NULL,
    ai_mode            BOOLEAN NOT NULL DEFAULT TRUE,
    last_seq           BIGINT NOT NULL DEFAULT 0,       -- seq of the newest message
    started_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_activity_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    escalated_at       TIMESTAMPTZ,
    accepted_at        TIMESTAMPTZ,
    ended_at           TIMESTAMPTZ
);
CREATE INDEX sessions_tenant_idx ON sessions (tenant_id, started_at);
CREATE INDEX sessions_queue_idx ON sessions (tenant_id, escalated_at) WHERE status = 'waiting';
CREATE INDEX sessions_agent_idx ON sessions (assigned_agent_id) WHERE status = 'active';
CREATE INDEX sessions_user_idx ON sessions (tenant_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX sessions_site_idx ON sessions (site_key);

CREATE TABLE messages (
    id                 UUID PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    session_id         VARCHAR(128) NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    seq                BIGINT NOT NULL,                 -- per session, gapless, from 1
    sender_type        TEXT NOT NULL CHECK (sender_type IN ('visitor', 'agent', 'ai', 'system')),
    sender_id          VARCHAR(255),                    -- agent id, or the visitor's userId
    user_id            VARCHAR(255),                    -- the visitor's userId when logged in
    message            TEXT NOT NULL,
    message_type       TEXT NOT NULL DEFAULT 'text' CHECK (message_type IN ('text', 'file', 'system')),
    client_message_id  VARCHAR(128),
    metadata           JSONB NOT NULL DEFAULT '{}',
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT messages_session_seq_key UNIQUE (session_id, seq),
    CONSTRAINT messages_client_id_key UNIQUE (session_id, client_message_id)
);
CREATE INDEX messages_user_idx ON messages (tenant_id, user_id, created_at) WHERE user_id IS NOT NULL;
CREATE INDEX messages_tenant_idx ON messages (tenant_id, created_at);

CREATE TABLE ratings (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    session_id  VARCHAR(128) NOT NULL UNIQUE REFERENCES sessions(session_id) ON DELETE CASCADE,
    agent_id    BIGINT REFERENCES agents(id) ON DELETE SET NULL,
    rating      SMALLINT NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment     TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ratings_tenant_idx ON ratings (tenant_id);

CREATE TABLE webhooks (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    events      JSONB NOT NULL DEFAULT '["message.created"]',
    secret      TEXT NOT NULL,                          -- whsec_<base64>; needed to sign
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_tenant_idx ON webhooks (tenant_id) WHERE active;

-- The transactional outbox: one row per event, written with the message in one transaction;
-- XADDed to meta:webhook_jobs after commit, re-added by the reconciler until delivered or dead.
CREATE TABLE webhook_outbox (
    id            BIGSERIAL PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    message_id    UUID REFERENCES messages(id) ON DELETE CASCADE,
    event         TEXT NOT NULL DEFAULT 'message.created',
    payload       JSONB NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts      INT NOT NULL DEFAULT 0,
    last_error    TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    enqueued_at   TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ
);
CREATE INDEX webhook_outbox_pending_idx ON webhook_outbox (created_at) WHERE status = 'pending';
