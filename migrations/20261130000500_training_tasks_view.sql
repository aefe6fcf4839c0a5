-- The training tasks read model (projection "training"): one row per task with its latest progress, and
-- the recorded progress reports (the loss curve) of every run.
CREATE TABLE training_tasks_view
(
    id              uuid PRIMARY KEY,
    owner_id        uuid        NOT NULL,
    name            text        NOT NULL,
    description     text        NOT NULL DEFAULT '',
    base_model_id   text        NOT NULL,
    dataset_id      uuid        NOT NULL,
    dataset_version integer     NOT NULL,
    config          jsonb       NOT NULL,
    status          text        NOT NULL,
    attempt         integer     NOT NULL DEFAULT 0,
    step            bigint      NOT NULL DEFAULT 0,
    total_steps     bigint,
    epoch           double precision,
    loss            double precision,
    eval_loss       double precision,
    learning_rate   double precision,
    tokens_per_sec  double precision,
    eta_secs        double precision,
    worker          text,
    result          jsonb,
    error_code      text,
    error_message   text,
    version         bigint      NOT NULL,
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    completed_at    timestamptz,
    updated_at      timestamptz NOT NULL
);

CREATE INDEX training_tasks_view_owner ON training_tasks_view (owner_id, created_at, id);
CREATE INDEX training_tasks_view_created ON training_tasks_view (created_at, id);
CREATE INDEX training_tasks_view_status ON training_tasks_view (status);
CREATE INDEX training_tasks_view_dataset ON training_tasks_view (dataset_id);

CREATE TABLE training_progress_view
(
    task_id        uuid             NOT NULL,
    attempt        integer          NOT NULL,
    step           bigint           NOT NULL,
    total_steps    bigint           NOT NULL,
    epoch          double precision NOT NULL,
    loss           double precision NOT NULL,
    learning_rate  double precision NOT NULL,
    tokens_per_sec double precision NOT NULL,
    eta_secs       double precision NOT NULL,
    eval_loss      double precision,
    recorded_at    timestamptz      NOT NULL,
    PRIMARY KEY (task_id, attempt, step)
);
