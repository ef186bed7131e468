-- Each agent's alerts, on the agent so that they follow them to every browser: which new
-- visitor messages chime and notify (static/dashboard.js decides from it), and whether
-- with a sound. 'mine': in conversations assigned to them or to nobody, and new ones.
ALTER TABLE agents ADD COLUMN alerts text NOT NULL DEFAULT 'mine'
    CHECK (alerts IN ('all', 'mine', 'new', 'none'));
ALTER TABLE agents ADD COLUMN alert_sound boolean NOT NULL DEFAULT true;
