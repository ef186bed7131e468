-- How far each side of a conversation has received and read its history (chat/receipts.py):
-- sequences of its entries, each only ever moving forward. The visitor's mark the agents'
-- messages; the team's (whichever agent got there first) mark the visitor's.
CREATE TABLE receipts (
    conversation_id   bigint PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    visitor_delivered integer NOT NULL DEFAULT 0,
    visitor_read      integer NOT NULL DEFAULT 0,
    agent_delivered   integer NOT NULL DEFAULT 0,
    agent_read        integer NOT NULL DEFAULT 0
);
