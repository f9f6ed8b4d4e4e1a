//! The fleet's tables: each replica's heartbeat (`replicas`) and its servers' views
//! (`server_views`). Timestamps that decide whether a replica is alive are the database's
//! clock (`Backend::now_text`), so the replicas' own clocks may drift.

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use crate::alerts::json_of;
use crate::writer::ts;
use crate::Store;

/// What a replica says of itself at every heartbeat.
#[derive(Clone, Debug)]
pub struct ReplicaInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub listen: Option<String>,
    pub started_at: warden_core::Timestamp,
}

/// `true` while this replica leads (see [`Store::spawn_leader_election`]).
pub type Leading = tokio::sync::watch::Receiver<bool>;

/// One replica as the database knows it.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicaRow {
    pub id: String,
    pub host: String,
    pub pid: i64,
    pub version: String,
    pub listen: Option<String>,
    pub started_at: String,
    pub heartbeat_at: String,
    pub stopped_at: Option<String>,
    /// Seconds since its last heartbeat, by the database's clock.
    pub age_seconds: f64,
    /// It held the leader lock at its last heartbeat.
    pub leading: bool,
}

/// One server's view on one replica.
#[derive(Clone, Debug, Serialize)]
pub struct ServerViewRow {
    pub replica: String,
    pub server: String,
    pub view: Value,
    pub updated_at: String,
}

/// An operator action one replica recorded for the others.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FleetCommand {
    pub id: i64,
    pub origin: String,
    pub server: String,
    pub instance: Option<u32>,
    /// `server` or `failover`.
    pub kind: String,
    pub action: String,
}

impl Store {
    /// Records an operator action this replica applied, for the others to apply.
    pub async fn record_fleet_command(
        &self,
        server: &str,
        instance: Option<u32>,
        kind: &str,
        action: &str,
    ) -> Result<i64, sqlx::Error> {
        sqlx::query(
            "INSERT INTO fleet_commands (at, origin, server, instance, kind, action)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(ts(&warden_core::now()))
        .bind(self.replica().unwrap_or(""))
        .bind(server)
        .bind(instance.map(i64::from))
        .bind(kind)
        .bind(action)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)
    }

    /// Keeps a client session's state (JSON) for any replica to continue it.
    pub async fn put_mcp_session(&self, id: &str, state: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO mcp_sessions (id, state, replica, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, replica = excluded.replica",
        )
        .bind(id)
        .bind(state)
        .bind(self.replica())
        .bind(ts(&warden_core::now()))
        .execute(&self.pool)
        .await
        .map(|_| ())
    }

    /// A client session's state, if any replica kept it.
    pub async fn mcp_session(&self, id: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT state FROM mcp_sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
    }

    /// What a client session set after its `initialize` (log level, subscriptions, tool
    /// exposure), as JSON; a session no replica recorded is left alone.
    pub async fn put_mcp_session_extras(&self, id: &str, extras: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE mcp_sessions SET extras = $2 WHERE id = $1")
            .bind(id)
            .bind(extras)
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// What [`Store::put_mcp_session_extras`] kept for a session, if anything.
    pub async fn mcp_session_extras(&self, id: &str) -> Result<Option<String>, sqlx::Error> {
        let row: Option<Option<String>> =
            sqlx::query_scalar("SELECT extras FROM mcp_sessions WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.flatten())
    }

    /// The client ended its session.
    pub async fn delete_mcp_session(&self, id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM mcp_sessions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// The newest command's id (0 when there is none): where a starting replica begins.
    pub async fn last_fleet_command(&self) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COALESCE(MAX(id), 0) FROM fleet_commands")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)
    }

    /// Commands after `after`, oldest first (this replica's own among them: the caller skips
    /// those, it applied them when it recorded them).
    pub async fn fleet_commands_after(&self, after: i64) -> Result<Vec<FleetCommand>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, origin, server, instance, kind, action FROM fleet_commands
             WHERE id > $1 ORDER BY id LIMIT 1000",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        commands(&rows)
    }

    /// The newest `limit` server and failover commands, newest first: what a starting replica
    /// reads to learn the operators' standing decisions (a server stopped, a failover forced).
    pub async fn recent_operator_commands(
        &self,
        limit: i64,
    ) -> Result<Vec<FleetCommand>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, origin, server, instance, kind, action FROM fleet_commands
             WHERE kind IN ('server', 'failover') ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        commands(&rows)
    }

    /// Writes the replica's row with the database's time as its heartbeat (and clears a
    /// `stopped_at` left by an earlier run under the same id).
    pub async fn replica_heartbeat(
        &self,
        r: &ReplicaInfo,
        leading: bool,
    ) -> Result<(), sqlx::Error> {
        let sql = format!(
            "INSERT INTO replicas (id, host, pid, version, listen, started_at, heartbeat_at, stopped_at, is_leader)
             VALUES ($1, $2, $3, $4, $5, $6, {now}, NULL, $7)
             ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
                version = excluded.version, listen = excluded.listen,
                started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
                stopped_at = NULL, is_leader = excluded.is_leader",
            now = self.backend.now_text()
        );
        sqlx::query(&sql)
            .bind(&r.id)
            .bind(&r.host)
            .bind(i64::from(r.pid))
            .bind(&r.version)
            .bind(&r.listen)
            .bind(ts(&r.started_at))
            .bind(i64::from(leading))
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// Writes the views that changed and deletes those of servers the replica no longer has,
    /// in one transaction.
    pub async fn put_server_views(
        &self,
        replica: &str,
        changed: &[(String, String)],
        removed: &[String],
    ) -> Result<(), sqlx::Error> {
        let upsert = format!(
            "INSERT INTO server_views (replica, server, view, updated_at) VALUES ($1, $2, $3, {now})
             ON CONFLICT (replica, server) DO UPDATE SET view = excluded.view,
                updated_at = excluded.updated_at",
            now = self.backend.now_text()
        );
        let mut tx = self.pool.begin().await?;
        for (server, view) in changed {
            sqlx::query(&upsert).bind(replica).bind(server).bind(view).execute(&mut *tx).await?;
        }
        for server in removed {
            sqlx::query("DELETE FROM server_views WHERE replica = $1 AND server = $2")
                .bind(replica)
                .bind(server)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    /// A clean stop: the replica is marked stopped and its views deleted.
    pub async fn replica_stopped(&self, id: &str) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "UPDATE replicas SET stopped_at = {now}, is_leader = 0 WHERE id = $1",
            now = self.backend.now_text()
        );
        sqlx::query(&sql).bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM server_views WHERE replica = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// Closes what replicas silent for more than `silent_for` seconds (or stopped) left open:
    /// their failure rows (`abandoned`) and their alerts. The leader does it, so a replica that
    /// never comes back does not keep incidents open for ever (one that restarts under the same
    /// id does it itself). Returns the failure rows closed.
    pub async fn abandon_gone_replicas(&self, silent_for: f64) -> Result<u64, sqlx::Error> {
        let gone = format!(
            "SELECT id FROM replicas WHERE stopped_at IS NOT NULL OR {age} > $2",
            age = self.backend.seconds_since("heartbeat_at"),
        );
        let now = ts(&warden_core::now());
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(&format!(
            "UPDATE integration_failures SET resolved = 1, recovery_action = 'abandoned',
                resolved_at = $1 WHERE resolved = 0 AND replica IN ({gone})"
        ))
        .bind(&now)
        .bind(silent_for)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "UPDATE alerts SET ends_at = $1 WHERE ends_at IS NULL AND replica IN ({gone})"
        ))
        .bind(&now)
        .bind(silent_for)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    /// Deletes replicas (and their views) whose last heartbeat is older than `before`.
    pub async fn forget_replicas(
        &self,
        before: warden_core::Timestamp,
    ) -> Result<u64, sqlx::Error> {
        let cutoff = ts(&before);
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM server_views WHERE replica IN
                (SELECT id FROM replicas WHERE heartbeat_at < $1)",
        )
        .bind(&cutoff)
        .execute(&mut *tx)
        .await?;
        let r = sqlx::query("DELETE FROM replicas WHERE heartbeat_at < $1")
            .bind(&cutoff)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    /// Every replica (by id) and every server view (by server, then replica).
    pub async fn fleet(&self) -> Result<(Vec<ReplicaRow>, Vec<ServerViewRow>), sqlx::Error> {
        let sql = format!(
            "SELECT id, host, pid, version, listen, started_at, heartbeat_at, stopped_at,
                    {age}, is_leader
             FROM replicas ORDER BY id",
            age = self.backend.seconds_since("heartbeat_at"),
        );
        let replicas = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| -> Result<ReplicaRow, sqlx::Error> {
                Ok(ReplicaRow {
                    id: r.try_get(0)?,
                    host: r.try_get(1)?,
                    pid: r.try_get(2)?,
                    version: r.try_get(3)?,
                    listen: r.try_get(4)?,
                    started_at: r.try_get(5)?,
                    heartbeat_at: r.try_get(6)?,
                    stopped_at: r.try_get(7)?,
                    age_seconds: r.try_get::<Option<f64>, _>(8)?.unwrap_or(f64::INFINITY),
                    leading: r.try_get::<i64, _>(9)? != 0,
                })
            })
            .collect::<Result<_, _>>()?;
        let views = sqlx::query(
            "SELECT replica, server, view, updated_at FROM server_views ORDER BY server, replica",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| -> Result<ServerViewRow, sqlx::Error> {
            Ok(ServerViewRow {
                replica: r.try_get(0)?,
                server: r.try_get(1)?,
                view: json_of(r.try_get(2)?),
                updated_at: r.try_get(3)?,
            })
        })
        .collect::<Result<_, _>>()?;
        Ok((replicas, views))
    }
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;

fn commands(rows: &[sqlx::any::AnyRow]) -> Result<Vec<FleetCommand>, sqlx::Error> {
    rows.iter()
        .map(|r| {
            Ok(FleetCommand {
                id: r.try_get(0)?,
                origin: r.try_get(1)?,
                server: r.try_get(2)?,
                instance: r.try_get::<Option<i64>, _>(3)?.and_then(|i| u32::try_from(i).ok()),
                kind: r.try_get(4)?,
                action: r.try_get(5)?,
            })
        })
        .collect()
}
