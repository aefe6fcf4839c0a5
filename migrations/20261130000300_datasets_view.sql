-- The datasets read model (projection "datasets"): one row per dataset, one per version.
-- `status` on the dataset is its latest version's; archived datasets keep their rows (for replay
-- equality and audit) and are filtered out by the queries.
CREATE TABLE datasets_view
(
    id             uuid PRIMARY KEY,
    owner_id       uuid        NOT NULL,
    name           text        NOT NULL,
    description    text        NOT NULL DEFAULT '',
    status         text        NOT NULL,
    latest_version integer     NOT NULL,
    archived       boolean     NOT NULL DEFAULT false,
    version        bigint      NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

CREATE INDEX datasets_view_owner ON datasets_view (owner_id, created_at, id) WHERE NOT archived;
CREATE INDEX datasets_view_created ON datasets_view (created_at, id) WHERE NOT archived;

CREATE TABLE dataset_versions_view
(
    dataset_id   uuid        NOT NULL,
    version      integer     NOT NULL,
    sha256       text        NOT NULL,
    file_size    bigint      NOT NULL,
    filename     text        NOT NULL,
    format       text        NOT NULL,
    status       text        NOT NULL,
    record_count bigint,
    shape        text,
    stats        jsonb,
    warnings     jsonb,
    errors       jsonb,
    error_count  bigint,
    created_at   timestamptz NOT NULL,
    validated_at timestamptz,
    PRIMARY KEY (dataset_id, version)
);
