-- One definition of an identity secret's fingerprint, used by every query that records or
-- checks which secret proved a visitor's email (0004 spelled the expression out inline).
CREATE FUNCTION identity_fingerprint(secret text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    AS $$ SELECT left(encode(sha256(convert_to(secret, 'UTF8')), 'hex'), 16) $$;
