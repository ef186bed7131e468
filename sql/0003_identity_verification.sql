-- Identity verification: a site's server signs its signed-in users' emails with a secret
-- that only it and this app know, so agents can trust who a visitor says they are.

-- NULL: verification is off for the site.
ALTER TABLE sites ADD COLUMN identity_secret text;

-- The email that was proven, kept apart from ``email`` (which the visitor can change):
-- the visitor is verified while the two agree.
ALTER TABLE visitors ADD COLUMN verified_email text;
