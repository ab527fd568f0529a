-- The GitHub App: its credentials (encrypted), the installations and repositories it can reach,
-- projects linked to repositories, webhook deliveries, and the check-run outbox.

-- At most one row: the App created through the manifest flow. Secrets are sealed with the
-- platform's secret key (see platform::crypto).
CREATE TABLE github_app (
    singleton      INTEGER PRIMARY KEY CHECK (singleton = 1),
    app_id         INTEGER NOT NULL,
    slug           TEXT NOT NULL,
    html_url       TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    client_secret  TEXT NOT NULL,
    webhook_secret TEXT NOT NULL,
    private_key    TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);

CREATE TABLE github_installations (
    id             INTEGER PRIMARY KEY,
    account_login  TEXT NOT NULL,
    account_type   TEXT NOT NULL,
    -- The CloudRunr user who proved (through GitHub's OAuth) that they can administer it.
    owner_id       TEXT REFERENCES users(id) ON DELETE SET NULL,
    suspended      INTEGER NOT NULL DEFAULT 0,
    deleted        INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE github_repositories (
    id              INTEGER PRIMARY KEY,
    installation_id INTEGER NOT NULL REFERENCES github_installations(id) ON DELETE CASCADE,
    full_name       TEXT NOT NULL,
    clone_url       TEXT NOT NULL,
    default_branch  TEXT,
    private         INTEGER NOT NULL DEFAULT 0,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX github_repositories_installation ON github_repositories(installation_id);

ALTER TABLE projects ADD COLUMN github_repo_id INTEGER;
ALTER TABLE projects ADD COLUMN github_full_name TEXT;
CREATE INDEX projects_github_repo ON projects(github_repo_id);

ALTER TABLE deployments ADD COLUMN commit_author TEXT;
ALTER TABLE deployments ADD COLUMN trigger TEXT NOT NULL DEFAULT 'api';
ALTER TABLE deployments ADD COLUMN check_run_id INTEGER;

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    event           TEXT NOT NULL,
    action          TEXT,
    repository      TEXT,
    installation_id INTEGER,
    outcome         TEXT NOT NULL,
    detail          TEXT NOT NULL,
    received_at     INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries(received_at);

-- What GitHub must be told about a deployment's check run, in order. Rows are written in the
-- same transaction as the state change they report, and deleted once GitHub has them.
CREATE TABLE check_run_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id   TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX check_run_outbox_due ON check_run_outbox(next_attempt_at);

-- The first user to sign up administers the platform (connects the GitHub App, sees deliveries).
ALTER TABLE users ADD COLUMN is_admin INTEGER NOT NULL DEFAULT 0;
