-- Webhook delivery (issue 16): endpoints gain a description, a previous secret that keeps
-- signing during a rotation's overlap, and why they were turned off; each (job, endpoint)
-- gets a delivery row that holds its attempts, its next retry and who holds it now.

ALTER TABLE webhooks
    ADD COLUMN description           TEXT NOT NULL DEFAULT '',
    ADD COLUMN previous_secret       TEXT,            -- signs beside `secret` until previous_secret_until
    ADD COLUMN previous_secret_until TIMESTAMPTZ,
    ADD COLUMN failing_since         TIMESTAMPTZ,     -- first failed attempt since the last success
    ADD COLUMN disabled_at           TIMESTAMPTZ,     -- turned off by the worker (410, or failing too long)
    ADD COLUMN disabled_reason       TEXT;

-- An outbox row is `pending` until a worker has made its deliveries (`sending`), then
-- `delivered` or `dead` once every delivery is settled. The reconciler re-adds `pending` rows.
ALTER TABLE webhook_outbox DROP CONSTRAINT webhook_outbox_status_check;
ALTER TABLE webhook_outbox ADD CONSTRAINT webhook_outbox_status_check
    CHECK (status IN ('pending', 'sending', 'delivered', 'dead'));

CREATE TABLE webhook_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    outbox_id        BIGINT NOT NULL REFERENCES webhook_outbox(id) ON DELETE CASCADE,
    webhook_id       BIGINT REFERENCES webhooks(id) ON DELETE CASCADE,   -- NULL: the global WEBHOOK_URL
    tenant_id        TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         INT NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    locked_until     TIMESTAMPTZ,                     -- a worker is attempting it until then
    last_status      INT,                             -- the receiver's HTTP status, NULL when none came
    last_error       TEXT,
    last_duration_ms INT,
    last_attempt_at  TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at      TIMESTAMPTZ,
    UNIQUE NULLS NOT DISTINCT (outbox_id, webhook_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, id);

-- Outbox rows of events that are not messages (conversation.*, rating.created, pings) go with
-- their tenant; those of messages already go with their messages.
CREATE TRIGGER tenants_delete_outbox AFTER DELETE ON tenants
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION amoiq_delete_dependents('webhook_outbox', 'tenant_id', 'id');
