-- Where the relay has published up to, per stream name (one row per NATS stream fed from this store).
CREATE TABLE relay_checkpoints
(
    name       text PRIMARY KEY,
    tx_id      xid8        NOT NULL DEFAULT '0'::xid8,
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The last event each projection applied, written in the same transaction as the view change.
CREATE TABLE projection_checkpoints
(
    name       text PRIMARY KEY,
    tx_id      xid8        NOT NULL DEFAULT '0'::xid8,
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
