-- The first user to sign up administers the platform (connects the GitHub App, sees deliveries).
ALTER TABLE users ADD COLUMN is_admin BIGINT NOT NULL DEFAULT 0;
-- "Sign in with GitHub": a user's linked GitHub account.
ALTER TABLE users ADD COLUMN github_user_id BIGINT;
ALTER TABLE users ADD COLUMN github_login TEXT;
-- NULLs are distinct (as in SQLite): any number of users without a linked account.
CREATE UNIQUE INDEX users_github_user_id ON users(github_user_id);
