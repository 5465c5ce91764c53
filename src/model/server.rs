//! Table `server`: the running servers and their heartbeats.

use std::time::Duration;

use mysql::prelude::Queryable;

use crate::db::DbError;

/// Records that `id` is alive now.
pub fn beat(conn: &mut impl Queryable, id: &str) -> Result<(), DbError> {
    conn.exec_drop(
        "INSERT INTO server (id, heartbeat) VALUES (?, NOW(3)) ON DUPLICATE KEY UPDATE heartbeat = NOW(3)",
        (id,),
    )?;
    Ok(())
}

/// Servers whose last heartbeat is older than `alive`.
pub fn dead(conn: &mut impl Queryable, alive: Duration) -> Result<Vec<String>, DbError> {
    Ok(conn.exec("SELECT id FROM server WHERE heartbeat <= NOW(3) - INTERVAL ? SECOND", (alive.as_secs(),))?)
}

/// Servers whose last heartbeat is younger than `alive`.
pub fn alive(conn: &mut impl Queryable, alive: Duration) -> Result<Vec<String>, DbError> {
    Ok(conn.exec("SELECT id FROM server WHERE heartbeat > NOW(3) - INTERVAL ? SECOND", (alive.as_secs(),))?)
}

/// Forgets a server that stopped or died.
pub fn remove(conn: &mut impl Queryable, id: &str) -> Result<(), DbError> {
    conn.exec_drop("DELETE FROM server WHERE id = ?", (id,))?;
    Ok(())
}
