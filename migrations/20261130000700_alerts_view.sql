-- The alerts view (design 6.3): one row per alert, as its events leave it.
CREATE TABLE alerts_view
(
    id              uuid PRIMARY KEY,
    kind            text        NOT NULL,
    severity        text        NOT NULL,
    subject         text        NOT NULL,
    message         text        NOT NULL,
    details         jsonb       NOT NULL,
    owner_id        uuid,
    status          text        NOT NULL,
    recurring       boolean     NOT NULL,
    times_raised    integer     NOT NULL,
    first_raised_at timestamptz NOT NULL,
    raised_at       timestamptz NOT NULL,
    acknowledged_by uuid,
    acknowledged_at timestamptz,
    acknowledge_note text,
    resolved_by     uuid,
    resolved_at     timestamptz,
    resolve_note    text
);

CREATE INDEX alerts_view_status ON alerts_view (status, raised_at DESC);
CREATE INDEX alerts_view_owner ON alerts_view (owner_id, raised_at DESC);
