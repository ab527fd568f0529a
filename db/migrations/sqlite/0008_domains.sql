-- Custom domains. A project may claim any name (several projects may have pending claims on the
-- same name); the name routes to the one project that last proved ownership with its TXT token:
-- verified_at is set exactly on that row, which the partial unique index keeps to one per name.
CREATE TABLE domains (
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    token       TEXT NOT NULL,
    state       TEXT NOT NULL,
    reason      TEXT,
    redirect_to TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    verified_at INTEGER,
    PRIMARY KEY (project_id, name)
);
CREATE UNIQUE INDEX domains_routed_name ON domains(name) WHERE verified_at IS NOT NULL;
CREATE INDEX domains_name ON domains(name);
