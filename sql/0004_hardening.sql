-- What hardening needed in the schema.

-- One row: this installation's id. Processes that share a database are one installation;
-- they name their Redis channels and keys after it, so that installations sharing one
-- Redis never hear each other.
CREATE TABLE installation (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    singleton  boolean NOT NULL DEFAULT true UNIQUE CHECK (singleton),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO installation DEFAULT VALUES;

-- Which identity secret proved a visitor's email: a fingerprint of it. Rotating the secret
-- or turning verification off makes every earlier proof stop counting.
ALTER TABLE visitors ADD COLUMN verified_by text;
UPDATE visitors v
   SET verified_by = left(encode(sha256(convert_to(s.identity_secret, 'UTF8')), 'hex'), 16)
  FROM sites s
 WHERE s.id = v.site_id AND v.verified_email IS NOT NULL AND s.identity_secret IS NOT NULL;
