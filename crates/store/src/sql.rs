//! The SQLite schema: current objects, the change log that resumable watches replay, and
//! the schema version.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use switchyard_api::ObjectKey;

use crate::watch::{EventType, WatchEvent};

/// Bumped on any incompatible change to the tables below.
const SCHEMA_VERSION: i64 = 1;

pub(crate) struct Db {
    conn: Connection,
}

impl Db {
    pub fn open(path: &Path) -> rusqlite::Result<Db> {
        let conn = Connection::open(path)?;
        // WAL lets readers run beside the writer; FULL makes every commit durable (fsync of
        // the WAL) before it returns, so an acknowledged write survives SIGKILL or power loss.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (
                 key TEXT PRIMARY KEY,
                 value TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS objects (
                 kind TEXT NOT NULL,
                 namespace TEXT NOT NULL,
                 name TEXT NOT NULL,
                 body TEXT NOT NULL,
                 PRIMARY KEY (kind, namespace, name)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS changes (
                 rv INTEGER PRIMARY KEY,
                 type TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 namespace TEXT NOT NULL,
                 name TEXT NOT NULL,
                 body TEXT NOT NULL
             );",
        )?;
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match version {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1), ('resource_version', '0')",
                    params![SCHEMA_VERSION.to_string()],
                )?;
            }
            Some(v) if v == SCHEMA_VERSION.to_string() => {}
            Some(v) => {
                return Err(rusqlite::Error::InvalidParameterName(format!(
                    "data dir has store schema version {v}; this switchyard reads version \
                     {SCHEMA_VERSION}"
                )));
            }
        }
        Ok(Db { conn })
    }

    pub fn load_objects(&self) -> rusqlite::Result<(Vec<(ObjectKey, Value)>, u64)> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind, namespace, name, body FROM objects")?;
        let rows = stmt.query_map([], |r| {
            let key = ObjectKey {
                kind: r.get(0)?,
                namespace: r.get(1)?,
                name: r.get(2)?,
            };
            let body: String = r.get(3)?;
            Ok((key, body))
        })?;
        let mut objects = Vec::new();
        for row in rows {
            let (key, body) = row?;
            let value = serde_json::from_str(&body).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    3,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?;
            objects.push((key, value));
        }
        let rv: String = self.conn.query_row(
            "SELECT value FROM meta WHERE key = 'resource_version'",
            [],
            |r| r.get(0),
        )?;
        Ok((objects, rv.parse().unwrap_or(0)))
    }

    pub fn load_history(&self, limit: usize) -> rusqlite::Result<Vec<WatchEvent>> {
        let mut stmt = self.conn.prepare(
            "SELECT rv, type, kind, namespace, name, body FROM changes ORDER BY rv DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64], |r| {
            let rv: i64 = r.get(0)?;
            let kind: String = r.get(1)?;
            let key = ObjectKey {
                kind: r.get(2)?,
                namespace: r.get(3)?,
                name: r.get(4)?,
            };
            let body: String = r.get(5)?;
            Ok((rv, kind, key, body))
        })?;
        let mut events = Vec::new();
        for row in rows {
            let (rv, kind, key, body) = row?;
            let event_type = match kind.as_str() {
                "ADDED" => EventType::Added,
                "MODIFIED" => EventType::Modified,
                _ => EventType::Deleted,
            };
            let object = serde_json::from_str(&body).unwrap_or(Value::Null);
            events.push(WatchEvent {
                event_type,
                key,
                object: object.into(),
                resource_version: rv as u64,
                previous: None,
            });
        }
        events.reverse();
        Ok(events)
    }

    /// Writes events in one transaction: objects, change log, resourceVersion, pruning.
    pub fn commit(
        &mut self,
        events: &[WatchEvent],
        rv: u64,
        history: usize,
    ) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT OR REPLACE INTO objects (kind, namespace, name, body) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut remove = tx.prepare_cached(
                "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
            )?;
            let mut log = tx.prepare_cached(
                "INSERT INTO changes (rv, type, kind, namespace, name, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for event in events {
                let k = &event.key;
                let body = event.object.to_string();
                match event.event_type {
                    EventType::Deleted => remove.execute(params![k.kind, k.namespace, k.name])?,
                    _ => upsert.execute(params![k.kind, k.namespace, k.name, body])?,
                };
                log.execute(params![
                    event.resource_version as i64,
                    event.event_type.as_str(),
                    k.kind,
                    k.namespace,
                    k.name,
                    body
                ])?;
            }
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'resource_version'",
                params![rv.to_string()],
            )?;
            tx.execute(
                "DELETE FROM changes WHERE rv <= ?1",
                params![rv.saturating_sub(history as u64) as i64],
            )?;
        }
        tx.commit()
    }
}
