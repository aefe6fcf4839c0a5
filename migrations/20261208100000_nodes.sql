-- The nodes of a deployment (infra/src/nodes.rs): each running `bonsai serve` holds a row it renews every
-- third of its lease (`BONSAI__NODE_LEASE_SECS`) and deletes when it stops. A node that has not renewed within
-- the lease is gone (killed, crashed, cut off): the training runs it held show as interrupted, and the
-- requests with an Idempotency-Key it was answering are settled for their retries.
CREATE TABLE nodes (
    name       text PRIMARY KEY,
    role       text        NOT NULL,
    version    text        NOT NULL,
    http_addr  text        NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    renewed_at timestamptz NOT NULL DEFAULT now()
);

-- Which node is answering a keyed request still in progress, the request's id (the correlation id of the
-- events it appends), and the event store's last position when it began: a retry whose first request's node
-- is gone finds out whether that request committed.
ALTER TABLE idempotency_keys
    ADD COLUMN node text,
    ADD COLUMN request_id text,
    ADD COLUMN after_position bigint;
