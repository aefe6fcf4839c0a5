-- Exactly once and in order, per aggregate: each projection records the last sequence it applied of every
-- aggregate, in the same transaction as the view change. An event is applied only when it is the aggregate's
-- next one; a gap (an earlier event redelivered late, or held by a node that died) is read from the event store,
-- which is the source of truth. The projection's checkpoint (projection_checkpoints) stays as the furthest
-- event applied, for the lag metric and rebuilds: it no longer decides what is skipped.
CREATE TABLE projection_positions
(
    projection     text   NOT NULL,
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    sequence       bigint NOT NULL,
    PRIMARY KEY (projection, aggregate_type, aggregate_id)
);

-- Aggregates a projection is held at: the event at `sequence` could not be applied (a poison event). Their
-- later events wait in the store (not in NATS); the consumer retries the aggregate periodically and raises an
-- alert while it is held. Other aggregates go on.
CREATE TABLE projection_held
(
    projection      text        NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL,
    event_type      text        NOT NULL,
    error           text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 1,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, aggregate_type, aggregate_id)
);

-- Views built before this release applied every event up to their checkpoint (as far as they know).
INSERT INTO projection_positions (projection, aggregate_type, aggregate_id, sequence)
SELECT c.name, e.aggregate_type, e.aggregate_id, max(e.sequence)
FROM projection_checkpoints c
         JOIN (VALUES ('users', 'User'), ('datasets', 'Dataset'), ('training', 'TrainingTask'), ('models', 'Model'),
                      ('qa', 'QaSession'), ('alerts', 'Alert')) AS p(name, aggregate_type) ON p.name = c.name
         JOIN events e ON e.aggregate_type = p.aggregate_type AND (e.tx_id, e.global_position) <= (c.tx_id, c.position)
GROUP BY c.name, e.aggregate_type, e.aggregate_id;
