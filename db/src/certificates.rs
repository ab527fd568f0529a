//! Certificates obtained from ACME, one row per certificate name (a host name, or `*.<domain>`),
//! shared by every router process. The private key is stored sealed (the caller seals and opens
//! it with the platform's `SecretBox`); this module only stores what it is given.

use super::{Database, Result};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A stored certificate: the PEM chain (leaf first), its sealed PEM key, and its times (Unix
/// milliseconds): validity, when to renew it, when it was issued.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCertificate {
    pub name: String,
    pub chain_pem: String,
    pub key_sealed: String,
    pub not_before: i64,
    pub not_after: i64,
    pub renew_at: i64,
    pub issued_at: i64,
}

impl std::fmt::Debug for StoredCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCertificate")
            .field("name", &self.name)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("renew_at", &self.renew_at)
            .field("issued_at", &self.issued_at)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "name, chain_pem, key_sealed, not_before, not_after, renew_at, issued_at";

fn from_row(r: &AnyRow) -> Result<StoredCertificate> {
    Ok(StoredCertificate {
        name: r.try_get("name")?,
        chain_pem: r.try_get("chain_pem")?,
        key_sealed: r.try_get("key_sealed")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        renew_at: r.try_get("renew_at")?,
        issued_at: r.try_get("issued_at")?,
    })
}

impl Database {
    /// Stores `cert`, replacing the name's previous certificate.
    pub async fn put_certificate(&self, cert: &StoredCertificate) -> Result<()> {
        sqlx::query(
            "INSERT INTO certificates (name, chain_pem, key_sealed, not_before, not_after, renew_at, issued_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (name) DO UPDATE SET chain_pem = excluded.chain_pem, key_sealed = excluded.key_sealed, \
               not_before = excluded.not_before, not_after = excluded.not_after, renew_at = excluded.renew_at, \
               issued_at = excluded.issued_at",
        )
        .bind(&cert.name)
        .bind(&cert.chain_pem)
        .bind(&cert.key_sealed)
        .bind(cert.not_before)
        .bind(cert.not_after)
        .bind(cert.renew_at)
        .bind(cert.issued_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn certificate(&self, name: &str) -> Result<Option<StoredCertificate>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM certificates WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// When the name's certificate expires (Unix milliseconds), if it has one: what a domain's
    /// view shows, without reading the chain or the sealed key.
    pub async fn certificate_not_after(&self, name: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT not_after FROM certificates WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(r.try_get("not_after")?)).transpose()
    }

    /// Every stored certificate, by name (what a router process loads into its store).
    pub async fn certificates(&self) -> Result<Vec<StoredCertificate>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM certificates ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// The names of the certificates to renew at `now`, soonest first.
    pub async fn certificates_due(&self, now: i64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT name FROM certificates WHERE renew_at <= $1 ORDER BY renew_at")
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("name")?)).collect()
    }

    /// Forgets the name's certificate (its domain was removed); true when there was one.
    pub async fn delete_certificate(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM certificates WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
