//! Accounts, their API tokens and linked GitHub accounts.

use super::{Database, DbError, LOCK_FIRST_USER, Result, conflict, parse_id};
use platform::model::User;
use platform::{Timestamp, TokenId, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

impl Database {
    /// Creates a user; `email` must already be normalized (trimmed, lowercase).
    pub async fn create_user(&self, name: &str, email: &str, password_hash: &str) -> Result<User> {
        let id = UserId::generate();
        // The first account administers the platform. On PostgreSQL two sign-ups could both see
        // no user yet (each statement sees what was committed when it started): they take turns.
        let mut tx = self.begin_locked(LOCK_FIRST_USER).await?;
        sqlx::query(
            "INSERT INTO users (id, name, email, password_hash, created_at, is_admin) \
             SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS TEXT), CAST($5 AS BIGINT), \
             CASE WHEN EXISTS (SELECT 1 FROM users) THEN 0 ELSE 1 END",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(email)
        .bind(password_hash)
        .bind(Timestamp::now().millis())
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, "email"))?;
        tx.commit().await?;
        self.user(&id)
            .await?
            .ok_or_else(|| DbError::Corrupt("user vanished".into()))
    }

    /// The user with this (normalized) email and their password hash.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<(User, String)>> {
        let row = sqlx::query(
            "SELECT id, name, email, is_admin, github_login, created_at, password_hash FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((user_from_row(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    pub async fn user(&self, id: &UserId) -> Result<Option<User>> {
        let row = sqlx::query("SELECT id, name, email, is_admin, github_login, created_at FROM users WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    /// Links a GitHub account to the user (for "Sign in with GitHub"). Fails with a conflict
    /// when that GitHub account is linked to another user.
    pub async fn link_github_account(&self, user: &UserId, github_id: u64, login: &str) -> Result<()> {
        sqlx::query("UPDATE users SET github_user_id = $2, github_login = $3 WHERE id = $1")
            .bind(user.as_str())
            .bind(i64::try_from(github_id).unwrap_or(i64::MAX))
            .bind(login)
            .execute(&self.pool)
            .await
            .map_err(|e| conflict(e, "github account"))?;
        Ok(())
    }

    pub async fn user_by_github_id(&self, github_id: u64) -> Result<Option<User>> {
        let row = sqlx::query("SELECT id FROM users WHERE github_user_id = $1")
            .bind(i64::try_from(github_id).unwrap_or(i64::MAX))
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => self.user(&parse_id(r.try_get("id")?, UserId::parse)?).await,
            None => Ok(None),
        }
    }

    pub async fn create_token(&self, user: &UserId, name: &str, token_hash: &str) -> Result<TokenRecord> {
        let token = TokenRecord {
            id: TokenId::generate(),
            name: name.to_owned(),
            created_at: Timestamp::now(),
            last_used_at: None,
        };
        sqlx::query("INSERT INTO api_tokens (id, user_id, name, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(token.id.as_str())
            .bind(user.as_str())
            .bind(&token.name)
            .bind(token_hash)
            .bind(token.created_at.millis())
            .execute(&self.pool)
            .await?;
        Ok(token)
    }

    pub async fn list_tokens(&self, user: &UserId) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, last_used_at FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenRecord {
                    id: parse_id(r.try_get("id")?, TokenId::parse)?,
                    name: r.try_get("name")?,
                    created_at: Timestamp::from_millis(r.try_get("created_at")?),
                    last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(Timestamp::from_millis),
                })
            })
            .collect()
    }

    /// Deletes one of the user's tokens; `false` if the user has no such token.
    pub async fn delete_token(&self, user: &UserId, token: &TokenId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
            .bind(token.as_str())
            .bind(user.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The owner of the token with this hash, noting the use.
    pub async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<User>> {
        let row = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2 RETURNING user_id")
            .bind(Timestamp::now().millis())
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => self.user(&parse_id(r.try_get("user_id")?, UserId::parse)?).await,
            None => Ok(None),
        }
    }
}

/// Sessions: a session token names its row by the SHA-256 of its id (`id_hash`), so the table
/// alone opens no session.
impl Database {
    /// Records a new session of `user`, valid until `expires_at` (Unix milliseconds), and forgets
    /// sessions that have expired.
    pub async fn create_session(&self, id_hash: &str, user: &UserId, expires_at: i64) -> Result<()> {
        let now = Timestamp::now().millis();
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO sessions (id_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(id_hash)
            .bind(user.as_str())
            .bind(now)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user of a live session of `user` with this id hash; `None` once it is revoked or expired.
    pub async fn session_user(&self, id_hash: &str, user: &UserId) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.email, u.is_admin, u.github_login, u.created_at \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id_hash = $1 AND s.user_id = $2 AND s.expires_at > $3",
        )
        .bind(id_hash)
        .bind(user.as_str())
        .bind(Timestamp::now().millis())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    /// Ends one session (log-out); `false` if it was not live.
    pub async fn delete_session(&self, id_hash: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets the user's password hash and ends every session of theirs, in one transaction: a
    /// session opened with the old password does not outlive it. Personal API tokens stay; they
    /// are revoked one by one.
    pub async fn change_password(&self, user: &UserId, password_hash: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user.as_str())
            .bind(password_hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user's password hash.
    pub async fn password_hash(&self, user: &UserId) -> Result<Option<String>> {
        let row = sqlx::query("SELECT password_hash FROM users WHERE id = $1")
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("password_hash")).transpose()?)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: TokenId,
    pub name: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

fn user_from_row(r: &AnyRow) -> Result<User> {
    Ok(User {
        id: parse_id(r.try_get("id")?, UserId::parse)?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        is_admin: r.try_get::<i64, _>("is_admin")? != 0,
        github_login: r.try_get("github_login")?,
        created_at: Timestamp::from_millis(r.try_get("created_at")?),
    })
}
