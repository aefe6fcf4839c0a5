-- Idempotency keys (issue 16, item 6; api/src/idempotency.rs): the first answer to each user's keyed POST,
-- replayed for 24 h to a retry of the same request. A row with no status is a request in progress.
CREATE TABLE idempotency_keys (
    user_id uuid NOT NULL,
    key text NOT NULL,
    request_sha256 bytea,
    status smallint,
    content_type text,
    location text,
    body bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
