-- Failed log-ins per (account, client address) pair: counted before the password is checked,
-- cleared by a success, forgotten a day after the last failure. `account` is the SHA-256 of the
-- normalized email, so that mistyped emails (or passwords typed into the email field) are not kept.
CREATE TABLE login_failures (
    account       TEXT NOT NULL,
    address       TEXT NOT NULL,
    failures      BIGINT NOT NULL,
    last_at       BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL,
    PRIMARY KEY (account, address)
);
CREATE INDEX login_failures_address ON login_failures(address, last_at);
CREATE INDEX login_failures_last ON login_failures(last_at);

-- Server-side browser and API sessions: a session token names one row by the SHA-256 of its id;
-- log-out deletes the row, a password change deletes all of the user's rows.
CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_expiry ON sessions(expires_at);

-- When the account's latest build was dispatched: the scheduler serves the account that waited
-- longest first.
ALTER TABLE users ADD COLUMN last_dispatch_at BIGINT;
