-- What the agent dashboard needs: unread counts, canned responses, message search.

-- How many visitor messages a conversation has; an agent's unread count is this minus
-- what they had read (agent_reads), so inbox rows stay the same for every agent.
ALTER TABLE conversations ADD COLUMN visitor_messages integer NOT NULL DEFAULT 0;
UPDATE conversations c
   SET visitor_messages = (SELECT count(*) FROM messages m
                            WHERE m.conversation_id = c.id AND m.kind = 'visitor');

CREATE TABLE agent_reads (
    agent_id        bigint NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    conversation_id bigint NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    read_count      integer NOT NULL CHECK (read_count >= 0),
    PRIMARY KEY (agent_id, conversation_id)
);

CREATE TABLE canned_responses (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Typed after "/" in the reply box to insert the body.
    shortcut   text NOT NULL UNIQUE CHECK (shortcut ~ '^[a-z0-9_-]{1,32}$'),
    body       text NOT NULL CHECK (length(body) BETWEEN 1 AND 5000),
    created_by bigint REFERENCES agents (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Search by message text: PostgreSQL's own full-text search, no extension needed.
CREATE INDEX messages_body_search ON messages USING gin (to_tsvector('simple', body));
CREATE INDEX visitors_name_email ON visitors (lower(name), lower(email));
