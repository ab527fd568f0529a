-- Certificates from ACME, shared by every router process. One row per certificate name: a host
-- name, or `*.<domain>` for the platform's wildcard. The private key is sealed with the platform's
-- SecretBox; the chain is public. Times are Unix milliseconds.
CREATE TABLE certificates (
    name        TEXT PRIMARY KEY,
    chain_pem   TEXT NOT NULL,
    key_sealed  TEXT NOT NULL,
    not_before  BIGINT NOT NULL,
    not_after   BIGINT NOT NULL,
    renew_at    BIGINT NOT NULL,
    issued_at   BIGINT NOT NULL
);
CREATE INDEX certificates_renew ON certificates(renew_at);

-- The ACME account per directory URL: instant-acme's credentials (id and key), sealed.
CREATE TABLE acme_accounts (
    directory           TEXT PRIMARY KEY,
    credentials_sealed  TEXT NOT NULL,
    created_at          BIGINT NOT NULL
);

-- HTTP-01 key authorizations by token, so that whichever router process Let's Encrypt reaches
-- answers `/.well-known/acme-challenge/{token}`. Removed when the order ends; `expires_at` lets a
-- crashed issuer's rows be swept.
CREATE TABLE acme_http_challenges (
    token              TEXT PRIMARY KEY,
    key_authorization  TEXT NOT NULL,
    name               TEXT NOT NULL,
    expires_at         BIGINT NOT NULL
);
CREATE INDEX acme_http_challenges_expiry ON acme_http_challenges(expires_at);

-- Issuance per certificate name: the lease (one process issues a name at a time), the failure
-- streak with its backoff, and the last error, shown to the user.
CREATE TABLE acme_issuance (
    name             TEXT PRIMARY KEY,
    lease_holder     TEXT,
    lease_until      BIGINT NOT NULL DEFAULT 0,
    failures         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL DEFAULT 0,
    last_error       TEXT,
    last_attempt_at  BIGINT
);

-- Every order started, and how it ended: counts the CA's rate limits (new orders per account in a
-- window, failed validations per host name in a window) before the next order starts.
CREATE TABLE acme_orders (
    id          TEXT PRIMARY KEY,
    directory   TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    outcome     TEXT NOT NULL
);
CREATE INDEX acme_orders_directory ON acme_orders(directory, created_at);
CREATE INDEX acme_orders_name ON acme_orders(name, created_at);
