-- The support workflow (issue 15): assignment mode per tenant, a chat limit per agent, and the
-- indexes the queue, the agent views and the stats read.

-- manual: agents pick chats from the queue; auto: the head of the queue goes to the online
-- agent with the fewest active chats under their max_concurrent_chats (SPEC section 12).
ALTER TABLE tenants ADD COLUMN assignment TEXT NOT NULL DEFAULT 'manual'
    CHECK (assignment IN ('manual', 'auto'));
ALTER TABLE agents ADD COLUMN max_concurrent_chats INT NOT NULL DEFAULT 5
    CHECK (max_concurrent_chats BETWEEN 1 AND 100);

-- Sessions an agent holds, whatever their status (chats handled; active chats are the
-- non-closed ones with the assistant off).
CREATE INDEX sessions_assigned_idx ON sessions (assigned_agent_id, status) WHERE assigned_agent_id IS NOT NULL;
-- The recent mean time to accept of a tenant (the queue's estimated wait).
CREATE INDEX sessions_accepted_idx ON sessions (tenant_id, accepted_at) WHERE accepted_at IS NOT NULL;
