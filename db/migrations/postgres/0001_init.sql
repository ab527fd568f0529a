-- CloudRunr schema, PostgreSQL flavour: the same tables, columns, keys and indexes as
-- migrations/sqlite, version for version. Times are Unix milliseconds; ids are opaque text.
--
-- Every integer is BIGINT (INT8): the queries decode them as i64, and flags stay 0/1 integers
-- (not BOOLEAN) so that one query text serves both backends. Text columns that queries sort by
-- are COLLATE "C", so that they sort bytewise as SQLite's default BINARY collation does.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE projects (
    id                       TEXT PRIMARY KEY,
    owner_id                 TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    slug                     TEXT NOT NULL UNIQUE,
    name                     TEXT NOT NULL,
    git_url                  TEXT NOT NULL,
    branch                   TEXT NOT NULL,
    root_dir                 TEXT NOT NULL DEFAULT '',
    framework                TEXT,
    install_command          TEXT,
    build_command            TEXT,
    output_dir               TEXT,
    production_deployment_id TEXT,
    created_at               BIGINT NOT NULL,
    updated_at               BIGINT NOT NULL
);
CREATE INDEX projects_owner ON projects(owner_id);

CREATE TABLE project_env (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    key        TEXT COLLATE "C" NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (project_id, key)
);

CREATE TABLE deployments (
    id               TEXT PRIMARY KEY,
    project_id       TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    number           BIGINT NOT NULL,
    state            TEXT NOT NULL,
    target           TEXT NOT NULL,
    branch           TEXT NOT NULL,
    commit_sha       TEXT,
    commit_message   TEXT,
    framework        TEXT,
    phases           TEXT NOT NULL DEFAULT '{}',
    error            TEXT,
    artifact         TEXT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    dispatched_at    BIGINT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    UNIQUE (project_id, number)
);
CREATE INDEX deployments_state ON deployments(state, dispatched_at);

-- No foreign key: lines are written in bulk by the log consumer, which drops lines of deployments
-- that no longer exist; deleting a project deletes its lines explicitly.
--
-- When TimescaleDB is available, Database::connect turns this table into a hypertable on `ts`
-- (see db::timescale): the primary key is then replaced by a unique index on
-- (deployment_id, seq, ts), as Timescale requires unique indexes to include the time column.
CREATE TABLE log_lines (
    deployment_id TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    ts            BIGINT NOT NULL,
    stream        TEXT NOT NULL,
    text          TEXT NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);
CREATE INDEX log_lines_ts ON log_lines(ts);

-- "Now" in the unit of log_lines.ts (Unix milliseconds): Timescale's integer_now function for
-- retention on an integer time column.
CREATE FUNCTION cloudrunr_unix_ms_now() RETURNS BIGINT LANGUAGE SQL STABLE
    AS $$ SELECT CAST(floor(extract(epoch FROM now()) * 1000) AS BIGINT) $$;
