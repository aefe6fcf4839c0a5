-- With encryption at rest on, users_view.email is sealed (a fresh nonce each time): an e-mail address is
-- found by its keyed digest instead (bonsai_domain::sealed::digest). NULL where stored plain.
ALTER TABLE users_view ADD COLUMN email_digest text;
CREATE INDEX users_view_email_digest ON users_view (email_digest) WHERE email_digest IS NOT NULL;
