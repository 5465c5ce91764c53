//! Creates the database and the tables of `chat.sql` if they are missing.

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};

use super::DbError;
use super::connect::{connect, options};

/// The schema, compiled in so the binary needs no file next to it.
const SCHEMA: &str = include_str!("../../chat.sql");

/// Makes sure the database named in `url` and all its tables exist, keeping
/// any data already there. Safe to run at every start and concurrently.
pub fn prepare(url: &str) -> Result<(), DbError> {
    let opts = options(url)?;
    let name = database_name(url)?;
    // The database may not exist yet, so connect to the server alone.
    let server = OptsBuilder::from_opts(opts).db_name(None::<String>);
    let mut conn = connect(&server.into())?;
    create_database(&mut conn, &name)?;
    conn.select_db(&name)?;
    for statement in statements(SCHEMA) {
        conn.query_drop(statement)?;
    }
    Ok(())
}

/// The database name in `url`, checked to be `[A-Za-z0-9_]+`: it names the
/// database in SQL text and namespaces Redis keys, so nothing else may pass.
pub fn database_name(url: &str) -> Result<String, DbError> {
    let opts = options(url)?;
    let name = opts.get_db_name().unwrap_or("");
    if name.is_empty() {
        return Err(DbError::BadUrl("it names no database; expected e.g. mysql://root@127.0.0.1:3306/chat".to_owned()));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(DbError::BadUrl(format!("database name {name:?} may contain only letters, digits and _")));
    }
    Ok(name.to_owned())
}

/// `CREATE DATABASE IF NOT EXISTS`; a user without that privilege can still
/// go on when the database is already there.
fn create_database(conn: &mut Conn, name: &str) -> Result<(), DbError> {
    // An identifier cannot be a parameter; `name` passed `database_name`.
    let create = format!("CREATE DATABASE IF NOT EXISTS `{name}` DEFAULT CHARACTER SET utf8mb4");
    let Err(err) = conn.query_drop(create) else {
        return Ok(());
    };
    let exists: Option<u8> =
        conn.exec_first("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", (name,))?;
    match exists {
        Some(_) => Ok(()),
        None => Err(err.into()),
    }
}

/// Splits `chat.sql` into statements: comment lines dropped, a statement ends
/// with `;` at the end of a line.
fn statements(sql: &str) -> Vec<String> {
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

    #[test]
    fn database_names_are_checked() {
        assert_eq!(database_name("mysql://root@127.0.0.1:3306/chat_1").ok(), Some("chat_1".to_owned()));
        for url in [
            "mysql://root@127.0.0.1:3306/",
            "mysql://root@127.0.0.1:3306",
            "mysql://root@127.0.0.1:3306/a-b",
            "mysql://root@127.0.0.1:3306/a%60b",
            "http://x/chat",
        ] {
            assert!(matches!(database_name(url), Err(DbError::BadUrl(_))), "{url}");
        }
    }
}
