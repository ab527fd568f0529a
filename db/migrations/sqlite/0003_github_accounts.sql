-- "Sign in with GitHub": a user's linked GitHub account.
ALTER TABLE users ADD COLUMN github_user_id INTEGER;
ALTER TABLE users ADD COLUMN github_login TEXT;
CREATE UNIQUE INDEX users_github_user_id ON users(github_user_id);
