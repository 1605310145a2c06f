//! `procsync ls`: the segments in `/dev/shm`, as an aligned table or JSON.
//!
//! The JSON is an array with one object per name (fields in the crate's
//! README): a procsync segment's header facts, or for another file
//! (`--all`) why it is not one.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use serde_json::{json, Value};
use shm::inventory::{self, SegmentInfo};

use crate::owner::Users;
use crate::Failure;

/// One row: a name and what is known of it.
struct Row {
    /// As the file is called (any bytes; shown escaped).
    name: OsString,
    info: Result<SegmentInfo, shm::Error>,
    /// Processes that map it or hold it open (procsync segments only).
    users: Vec<u32>,
}

/// `procsync ls`.
pub(crate) fn ls(all: bool, json: bool) -> Result<(), Failure> {
    let rows: Vec<Row> = inventory::list()?
        .into_iter()
        .filter(|(_, info)| all || info.is_ok())
        .map(|(name, info)| {
            let users = match &info {
                Ok(_) => inventory::users(&name)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|pid| pid.get())
                    .collect(),
                Err(_) => Vec::new(),
            };
            Row { name, info, users }
        })
        .collect();
    let users = Users::load();
    if json {
        let array: Vec<Value> = rows.iter().map(|row| to_json(row, &users)).collect();
        let text = serde_json::to_string_pretty(&array)
            .map_err(|e| Failure::Error(format!("encoding JSON: {e}")))?;
        crate::emit(&format!("{text}\n"))
    } else {
        crate::emit(&table(&rows, &users))
    }
}

/// What `stat` says of a name that is not a readable procsync segment.
fn file_facts(name: &OsStr) -> Option<(u64, u32, u32)> {
    let meta =
        std::fs::symlink_metadata(std::path::Path::new(inventory::SHM_DIR).join(name)).ok()?;
    Some((meta.len(), meta.permissions().mode() & 0o7777, meta.uid()))
}

/// A short word for why a name is not listed as a procsync segment.
fn not_procsync(error: &shm::Error) -> &'static str {
    match error {
        shm::Error::Foreign { .. } => "foreign",
        shm::Error::Truncated { .. } => "truncated",
        shm::Error::PermissionDenied { .. } => "unreadable",
        _ => "error",
    }
}

fn to_json(row: &Row, users: &Users) -> Value {
    match &row.info {
        Ok(info) => json!({
            "name": inventory::escape(row.name.as_bytes()),
            "procsync": true,
            "kind": info.kind,
            "type": info.type_name,
            "element_size": info.element_size,
            "len": info.len,
            "size": info.file_size,
            "mode": format!("{:04o}", info.mode),
            "uid": info.uid,
            "owner": users.name(info.uid),
            "creator_pid": info.creator.map(|p| p.get()),
            "creator_alive": info.creator_alive,
            "persistent": info.persistent,
            "ready": info.ready,
            "layout_version": info.layout_version,
            "age_seconds": info.age.as_secs_f64(),
            "users": row.users,
            "mapped_by": row.users.len(),
        }),
        Err(error) => {
            let facts = file_facts(&row.name);
            json!({
                "name": inventory::escape(row.name.as_bytes()),
                "procsync": false,
                "status": not_procsync(error),
                "error": error.to_string(),
                "size": facts.map(|f| f.0),
                "mode": facts.map(|f| format!("{:04o}", f.1)),
                "uid": facts.map(|f| f.2),
                "owner": facts.map(|f| users.name(f.2)),
            })
        }
    }
}

const HEADINGS: [&str; 10] = [
    "NAME", "KIND", "TYPE", "SIZE", "MODE", "OWNER", "CREATOR", "ALIVE", "PERSIST", "USERS",
];

/// The table's cells for a row.
fn cells(row: &Row, users: &Users) -> [String; 10] {
    match &row.info {
        Ok(info) => [
            inventory::escape(row.name.as_bytes()),
            info.kind.unwrap_or("?").to_string(),
            if info.type_name.is_empty() {
                "?".to_string()
            } else {
                inventory::escape(info.type_name.as_bytes())
            },
            info.file_size.to_string(),
            format!("{:04o}", info.mode),
            users.name(info.uid),
            info.creator
                .map_or_else(|| "-".to_string(), |p| p.get().to_string()),
            match (info.creator, info.creator_alive) {
                (None, _) => "-",
                (Some(_), Some(true)) => "yes",
                (Some(_), Some(false)) => "no",
                (Some(_), None) => "?",
            }
            .to_string(),
            match info.persistent {
                Some(true) => "yes",
                Some(false) => "no",
                None => "?",
            }
            .to_string(),
            row.users.len().to_string(),
        ],
        Err(error) => {
            let facts = file_facts(&row.name);
            let dash = || "-".to_string();
            [
                inventory::escape(row.name.as_bytes()),
                not_procsync(error).to_string(),
                dash(),
                facts.map_or_else(dash, |f| f.0.to_string()),
                facts.map_or_else(dash, |f| format!("{:04o}", f.1)),
                facts.map_or_else(dash, |f| users.name(f.2)),
                dash(),
                dash(),
                dash(),
                dash(),
            ]
        }
    }
}

/// The rows as a table, columns padded to their widest cell. Names and
/// type names are escaped ([`inventory::escape`]) and every other cell is
/// [`printable`](crate::printable): no cell breaks its row or reaches the
/// terminal raw.
fn table(rows: &[Row], users: &Users) -> String {
    let lines: Vec<[String; 10]> = std::iter::once(HEADINGS.map(String::from))
        .chain(
            rows.iter()
                .map(|row| cells(row, users).map(|cell| crate::printable(&cell))),
        )
        .collect();
    let mut widths = [0usize; 10];
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        let padded: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    }
    out
}
