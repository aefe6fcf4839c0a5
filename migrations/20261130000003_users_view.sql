-- The users read model (projection "users"). No password hash: logins are decided by the User aggregate.
CREATE TABLE users_view
(
    id           uuid PRIMARY KEY,
    username     text        NOT NULL UNIQUE,
    email        text        NOT NULL,
    display_name text        NOT NULL DEFAULT '',
    role         text        NOT NULL,
    is_active    boolean     NOT NULL DEFAULT true,
    version      bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE INDEX users_view_email ON users_view (email);
CREATE INDEX users_view_role ON users_view (role);
CREATE INDEX users_view_created ON users_view (created_at, id);
