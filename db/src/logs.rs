//! Build log lines: stored once per (deployment, sequence number), read in order.

use super::{Database, Result, parse_enum};
use platform::model::{LogLine, LogStream};
use platform::{DeploymentId, Timestamp};
use sqlx::Row;

/// Rows per `INSERT` statement: 4 parameters each, well within both engines' limits.
const INSERT_ROWS: usize = 200;

/// An `INSERT` of `rows` lines of one deployment (`$1`), each `(seq, ts, stream, text)`.
fn insert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| {
            let p = 2 + 4 * i;
            format!(
                "(CAST($1 AS TEXT), CAST(${} AS BIGINT), CAST(${} AS BIGINT), CAST(${} AS TEXT), CAST(${} AS TEXT))",
                p,
                p + 1,
                p + 2,
                p + 3
            )
        })
        .collect();
    // No conflict target: the unique key is (deployment_id, seq) on a plain table and
    // (deployment_id, seq, ts) on a hypertable; a replayed line carries the same ts.
    format!(
        "INSERT INTO log_lines (deployment_id, seq, ts, stream, text) \
         SELECT * FROM (VALUES {}) AS v \
         WHERE EXISTS (SELECT 1 FROM deployments WHERE id = $1) \
         ON CONFLICT DO NOTHING",
        values.join(", ")
    )
}

impl Database {
    /// Stores log lines; a line already stored (same deployment and sequence) is left as it is,
    /// and lines of deployments that no longer exist are dropped.
    ///
    /// The lines go in one transaction, [`INSERT_ROWS`] rows per statement: a statement per line
    /// made the log consumer, which every build's lines pass through, slow enough for one
    /// talkative build to hold up the others.
    pub async fn insert_log_lines(&self, lines: &[(DeploymentId, LogLine)]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let mut rest = lines;
        while let Some(first) = rest.first() {
            // One statement per run of one deployment's lines (a batch is mostly such runs).
            let run = rest
                .iter()
                .take(INSERT_ROWS)
                .take_while(|(id, _)| id == &first.0)
                .count();
            let (chunk, tail) = rest.split_at(run);
            rest = tail;
            let sql = insert_sql(chunk.len());
            let mut query = sqlx::query(&sql).bind(first.0.as_str());
            for (_, line) in chunk {
                query = query
                    .bind(i64::try_from(line.seq).unwrap_or(i64::MAX))
                    .bind(line.ts.millis())
                    .bind(line.stream.as_str())
                    .bind(&line.text);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Lines with sequence numbers above `after`, in order, at most `limit`.
    pub async fn log_lines(&self, id: &DeploymentId, after: u64, limit: u32) -> Result<Vec<LogLine>> {
        let rows = sqlx::query(
            "SELECT seq, ts, stream, text FROM log_lines WHERE deployment_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(id.as_str())
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LogLine {
                    seq: u64::try_from(r.try_get::<i64, _>("seq")?).unwrap_or(0),
                    ts: Timestamp::from_millis(r.try_get("ts")?),
                    stream: parse_enum(&r.try_get::<String, _>("stream")?, LogStream::parse)?,
                    text: r.try_get("text")?,
                })
            })
            .collect()
    }

    /// The last `n` lines of the deployment's log, in order.
    pub async fn last_log_lines(&self, id: &DeploymentId, n: u32) -> Result<Vec<LogLine>> {
        let last = self.last_log_seq(id).await?;
        self.log_lines(id, last.saturating_sub(u64::from(n)), n).await
    }

    /// The highest sequence number stored for the deployment (0 when none).
    pub async fn last_log_seq(&self, id: &DeploymentId) -> Result<u64> {
        let row = sqlx::query("SELECT MAX(seq) AS m FROM log_lines WHERE deployment_id = $1")
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row
            .try_get::<Option<i64>, _>("m")?
            .and_then(|m| u64::try_from(m).ok())
            .unwrap_or(0))
    }
}
