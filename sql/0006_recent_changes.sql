-- The repair check asks each process's database, every 20 s, which conversations changed
-- lately (chat/repair.py); this keeps that one query cheap however many there are.
CREATE INDEX conversations_updated_idx ON conversations (updated_at);
