-- Lighter message writes (issue 5: the benchmark suite). Every stored message costs a row in
-- messages and one in webhook_outbox; a profile of PostgreSQL under the message load showed a
-- fifth of its time in foreign key checks (four per message) and much of the rest in the rows.

-- The tenant of a message and of its outbox row is the tenant of the message's session: the
-- writer stores a message only when its session belongs to that tenant, and deleting a tenant
-- deletes its sessions, their messages and their outbox rows (sessions -> messages -> outbox
-- cascade). The two tenant keys checked nothing more, once per message each. (An outbox row
-- without a message, for an event of another kind, has no such cascade: whoever adds such
-- events deletes them with their tenant.)
ALTER TABLE messages DROP CONSTRAINT messages_tenant_id_fkey;
ALTER TABLE webhook_outbox DROP CONSTRAINT webhook_outbox_tenant_id_fkey;

-- A message.created job carries no copy of the message: its payload is made from the message
-- row (which is never changed) when it is delivered, so the outbox row stays small. `payload`
-- holds events that are not about a stored message.
ALTER TABLE webhook_outbox ALTER COLUMN payload DROP NOT NULL;
ALTER TABLE webhook_outbox ADD CONSTRAINT webhook_outbox_payload_check
    CHECK (payload IS NOT NULL OR message_id IS NOT NULL);
