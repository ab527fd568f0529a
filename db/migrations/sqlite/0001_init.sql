-- CloudRunr schema, SQLite flavour. Times are Unix milliseconds; ids are opaque text.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
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
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL
);
CREATE INDEX projects_owner ON projects(owner_id);

CREATE TABLE project_env (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (project_id, key)
);

CREATE TABLE deployments (
    id               TEXT PRIMARY KEY,
    project_id       TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    number           INTEGER NOT NULL,
    state            TEXT NOT NULL,
    target           TEXT NOT NULL,
    branch           TEXT NOT NULL,
    commit_sha       TEXT,
    commit_message   TEXT,
    framework        TEXT,
    phases           TEXT NOT NULL DEFAULT '{}',
    error            TEXT,
    artifact         TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    dispatched_at    INTEGER,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    UNIQUE (project_id, number)
);
CREATE INDEX deployments_state ON deployments(state, dispatched_at);

-- No foreign key: lines are written in bulk by the log consumer, which drops lines of deployments
-- that no longer exist; deleting a project deletes its lines explicitly.
CREATE TABLE log_lines (
    deployment_id TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    ts            INTEGER NOT NULL,
    stream        TEXT NOT NULL,
    text          TEXT NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);
