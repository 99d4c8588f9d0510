-- Messages and their outbox rows without per-row foreign key checks (issue 5: the benchmark
-- suite). The writer's one statement stores a message only for a session it has locked FOR
-- UPDATE (so the session exists and nobody deletes it before the commit), and an outbox row
-- only for a message it inserts in that statement: the two checks PostgreSQL made per message
-- (messages.session_id -> sessions, webhook_outbox.message_id -> messages) repeated that, at a
-- fifth of PostgreSQL's CPU per message. What the keys' ON DELETE CASCADE did is done by two
-- statement triggers, once per DELETE: deleting sessions (directly, or through a widget or a
-- tenant) deletes their messages, and deleting messages deletes their outbox rows.
ALTER TABLE messages DROP CONSTRAINT messages_session_id_fkey;
ALTER TABLE webhook_outbox DROP CONSTRAINT webhook_outbox_message_id_fkey;

-- Trigger arguments: the dependent table, its column, the deleted rows' column it refers to.
CREATE FUNCTION amoiq_delete_dependents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DELETE FROM %I d USING gone g WHERE d.%I = g.%I', TG_ARGV[0], TG_ARGV[1], TG_ARGV[2]);
    RETURN NULL;
END
$$;
CREATE TRIGGER sessions_delete_messages AFTER DELETE ON sessions
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION amoiq_delete_dependents('messages', 'session_id', 'session_id');
CREATE TRIGGER messages_delete_outbox AFTER DELETE ON messages
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION amoiq_delete_dependents('webhook_outbox', 'message_id', 'id');
