-- When each API key was last used (issue 20). Not an event: one per request would swamp the store. Written
-- at most once a minute per key (api/src/auth/api_keys.rs); keys are created and revoked by User events.
CREATE TABLE api_key_usage (
    key_id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    last_used_at timestamptz NOT NULL
);

CREATE INDEX api_key_usage_by_user ON api_key_usage (user_id);
