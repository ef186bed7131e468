-- The core schema: sites, agents, visitors, conversations and their history (messages).
-- Forward-only: never edit this file once released; add 0002_... instead.

CREATE TABLE sites (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The key pasted into the embed snippet; public by design, so it grants nothing by itself.
    public_key      text NOT NULL UNIQUE CHECK (public_key ~ '^[A-Za-z0-9_-]{8,64}$'),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- Origins (scheme://host[:port]) allowed to embed the widget and to post forms.
    allowed_origins text[] NOT NULL DEFAULT '{}',
    -- Branding, greeting, pre-chat form and offline options; validated by the application.
    settings        jsonb NOT NULL DEFAULT '{}'::jsonb,
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agents (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text NOT NULL CHECK (length(email) <= 254 AND position('@' IN email) > 1),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    role          text NOT NULL DEFAULT 'agent' CHECK (role IN ('admin', 'agent')),
    password_hash text NOT NULL,
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- One account per address, whatever its case.
CREATE UNIQUE INDEX agents_email_key ON agents (lower(email));

CREATE TABLE visitors (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id      bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    -- SHA-256 of the visitor's bearer token; the token itself is never stored.
    token_hash   bytea NOT NULL UNIQUE,
    name         text CHECK (length(name) <= 100),
    email        text CHECK (length(email) <= 254),
    -- What the widget reports: current page, browser, language.
    details      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX visitors_site_idx ON visitors (site_id);

CREATE TABLE conversations (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id          bigint NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    visitor_id       bigint NOT NULL REFERENCES visitors (id) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'waiting'
                     CHECK (status IN ('waiting', 'active', 'closed')),
    assignee_id      bigint REFERENCES agents (id) ON DELETE SET NULL,
    -- The sequence number of the newest history entry; taken under this row's lock so that
    -- within a conversation sequence order is commit order, with no gaps.
    last_seq         bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    -- Bumped by every change to this row, so a stream can drop a state update that the
    -- broker delivered after a newer one.
    version          bigint NOT NULL DEFAULT 1,
    -- The start of the newest visitor or agent message, for inbox rows.
    preview          text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_activity_at timestamptz NOT NULL DEFAULT now(),
    closed_at        timestamptz
);
-- The inbox: a site's conversations by status, most recently active first.
CREATE INDEX conversations_inbox_idx ON conversations (site_id, status, last_activity_at DESC);
-- "Mine": an agent's open conversations.
CREATE INDEX conversations_assignee_idx ON conversations (assignee_id, status, last_activity_at DESC)
    WHERE assignee_id IS NOT NULL;
-- A visitor's past conversations.
CREATE INDEX conversations_visitor_idx ON conversations (visitor_id, created_at DESC);

-- Each conversation's history, which is also its event log: replayed by (conversation_id, seq).
CREATE TABLE messages (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id bigint NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             bigint NOT NULL CHECK (seq > 0),
    kind            text NOT NULL CHECK (kind IN ('visitor', 'agent', 'note', 'activity')),
    -- The author of agent messages and notes, and the actor of activity entries.
    agent_id        bigint REFERENCES agents (id) ON DELETE SET NULL,
    body            text NOT NULL CHECK (length(body) <= 20000),
    -- Structured detail of activity entries, e.g. {"status": "closed"}.
    meta            jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- The sender's idempotency key: a retried send finds the first one instead of adding another.
    client_id       text CHECK (length(client_id) BETWEEN 1 AND 64),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (conversation_id, seq),
    UNIQUE (conversation_id, client_id)
);
CREATE INDEX messages_agent_idx ON messages (agent_id) WHERE agent_id IS NOT NULL;

-- Signed-in dashboard sessions. The cookie holds a random token; only its hash is stored, so
-- a leaked database does not leak sessions. Deleting the rows signs the agent out everywhere.
CREATE TABLE agent_sessions (
    token_hash   bytea PRIMARY KEY,
    agent_id     bigint NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    -- The synchronizer token that every unsafe request of this session must echo.
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX agent_sessions_agent_idx ON agent_sessions (agent_id);
