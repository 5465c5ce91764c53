//! `chat.sql`, compiled in, applied statement by statement.

use mysql::Conn;
use mysql::prelude::Queryable;

use crate::db::DbError;

/// The schema, compiled in so the binary needs no file next to it.
pub(super) const SCHEMA: &str = include_str!("../../../chat.sql");

/// Runs every statement of `chat.sql`: creates the tables that are missing,
/// touches none that exist.
pub(super) fn apply(conn: &mut Conn) -> Result<(), DbError> {
    for statement in statements(SCHEMA) {
        conn.query_drop(statement)?;
    }
    Ok(())
}

/// Splits `chat.sql` into statements: comment lines dropped, a statement ends
/// with `;` at the end of a line.
pub(super) fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let statement = current.trim().trim_end_matches(';').to_owned();
            out.push(statement);
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_splits_into_its_eight_tables() {
        let statements = statements(SCHEMA);
        assert_eq!(statements.len(), 8);
        for (statement, table) in statements.iter().zip(["user", "friend", "allgroup", "groupuser", "offlinemessage"]) {
            let head = format!("CREATE TABLE IF NOT EXISTS {table} (");
            assert!(statement.starts_with(&head), "{statement}");
            assert!(!statement.ends_with(';'));
        }
        assert!(statements.iter().all(|s| !s.to_ascii_uppercase().contains("DROP")));
    }
}
