-- The models read model (projection "models") and the question/answer history (projection "qa").
CREATE TABLE models_view
(
    id               uuid PRIMARY KEY,
    owner_id         uuid        NOT NULL,
    name             text        NOT NULL,
    model_version    integer     NOT NULL,
    base_model_id    text        NOT NULL,
    source           jsonb       NOT NULL,
    training_task_id uuid,
    metrics          jsonb       NOT NULL,
    status           text        NOT NULL,
    onnx_path        text,
    export_secs      double precision,
    error_code       text,
    error_message    text,
    deployed         boolean     NOT NULL DEFAULT false,
    accuracy         double precision,
    test_report      jsonb,
    tested_at        timestamptz,
    version          bigint      NOT NULL,
    created_at       timestamptz NOT NULL,
    deployed_at      timestamptz,
    updated_at       timestamptz NOT NULL
);

CREATE INDEX models_view_created ON models_view (created_at, id);
CREATE INDEX models_view_name ON models_view (name, model_version);
CREATE INDEX models_view_deployed ON models_view (deployed_at) WHERE deployed;
CREATE INDEX models_view_task ON models_view (training_task_id);

CREATE TABLE qa_history_view
(
    question_id       uuid PRIMARY KEY,
    session_id        uuid        NOT NULL,
    user_id           uuid        NOT NULL,
    model_id          uuid        NOT NULL,
    question          text        NOT NULL,
    answer            text,
    status            text        NOT NULL,
    response_ms       bigint,
    prompt_tokens     integer,
    completion_tokens integer,
    finish_reason     text,
    cached            boolean,
    error_code        text,
    error_message     text,
    asked_at          timestamptz NOT NULL,
    answered_at       timestamptz
);

CREATE INDEX qa_history_view_user ON qa_history_view (user_id, asked_at, question_id);
CREATE INDEX qa_history_view_session ON qa_history_view (session_id, asked_at);
