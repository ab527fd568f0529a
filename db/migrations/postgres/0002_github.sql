-- The GitHub App: its credentials (encrypted), the installations and repositories it can reach,
-- projects linked to repositories, webhook deliveries, and the check-run outbox.

-- At most one row: the App created through the manifest flow. Secrets are sealed with the
-- platform's secret key (see platform::crypto).
CREATE TABLE github_app (
    singleton      BIGINT PRIMARY KEY CHECK (singleton = 1),
    app_id         BIGINT NOT NULL,
    slug           TEXT NOT NULL,
    html_url       TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    client_secret  TEXT NOT NULL,
    webhook_secret TEXT NOT NULL,
    private_key    TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

-- GitHub's ids (not generated here).
CREATE TABLE github_installations (
    id             BIGINT PRIMARY KEY,
    account_login  TEXT COLLATE "C" NOT NULL,
    account_type   TEXT NOT NULL,
    -- The CloudRunr user who proved (through GitHub's OAuth) that they can administer it.
    owner_id       TEXT REFERENCES users(id) ON DELETE SET NULL,
    suspended      BIGINT NOT NULL DEFAULT 0,
    deleted        BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE github_repositories (
    id              BIGINT PRIMARY KEY,
    installation_id BIGINT NOT NULL REFERENCES github_installations(id) ON DELETE CASCADE,
    full_name       TEXT COLLATE "C" NOT NULL,
    clone_url       TEXT NOT NULL,
    default_branch  TEXT,
    private         BIGINT NOT NULL DEFAULT 0,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX github_repositories_installation ON github_repositories(installation_id);

ALTER TABLE projects ADD COLUMN github_repo_id BIGINT;
ALTER TABLE projects ADD COLUMN github_full_name TEXT;
CREATE INDEX projects_github_repo ON projects(github_repo_id);

ALTER TABLE deployments ADD COLUMN commit_author TEXT;
ALTER TABLE deployments ADD COLUMN trigger TEXT NOT NULL DEFAULT 'api';
ALTER TABLE deployments ADD COLUMN check_run_id BIGINT;

CREATE TABLE webhook_deliveries (
    id              TEXT COLLATE "C" PRIMARY KEY,
    event           TEXT NOT NULL,
    action          TEXT,
    repository      TEXT,
    installation_id BIGINT,
    outcome         TEXT NOT NULL,
    detail          TEXT NOT NULL,
    received_at     BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries(received_at);

-- What GitHub must be told about a deployment's check run, in order. Rows are written in the
-- same transaction as the state change they report, and deleted once GitHub has them. The id is
-- an identity (never reused, like SQLite's AUTOINCREMENT) and orders the updates.
CREATE TABLE check_run_outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deployment_id   TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX check_run_outbox_due ON check_run_outbox(next_attempt_at);
