-- ChatServer schema: the original C++ ChatServer's tables, made safe to run
-- at every start. Only CREATE TABLE IF NOT EXISTS, never DROP: running this
-- file twice keeps all data.
--
-- Conventions so that src/db/schema.rs can apply it statement by statement:
-- comments sit on lines of their own, and every statement ends with `;` at
-- the end of a line.
--
-- utf8mb4 everywhere so emoji and every other Unicode character survive;
-- InnoDB for transactions (a group is created together with its creator).
-- Names use utf8mb4_bin so they are compared exactly: "Li" and "li", or "e"
-- and "é", are different names (a case-insensitive collation would call
-- them duplicates).

-- One row per account.
-- password holds an argon2id PHC string ($argon2id$v=19$m=..,t=..,p=..$salt$hash):
-- salt and cost parameters travel with the hash, and the plain password is
-- never stored. 255 characters leave room for stronger parameters later.
-- state is what friend lists show. Who is really logged in where is the
-- `online` table below, kept under this row's lock, so one user is logged
-- in at most once in the cluster; state follows it.
CREATE TABLE IF NOT EXISTS user (
    id INT NOT NULL AUTO_INCREMENT,
    name VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    password VARCHAR(255) NOT NULL,
    state ENUM('online', 'offline') NOT NULL DEFAULT 'offline',
    PRIMARY KEY (id),
    UNIQUE KEY name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- One-way friendship, as in the original: userid added friendid.
-- The primary key makes adding the same friend twice a duplicate-key error;
-- the key on friendid finds everyone who added a user (for presence pushes).
CREATE TABLE IF NOT EXISTS friend (
    userid INT NOT NULL,
    friendid INT NOT NULL,
    PRIMARY KEY (userid, friendid),
    KEY friendid (friendid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Groups. groupname is unique (exact comparison), so creating a group whose
-- name is taken is a duplicate-key error rather than a second group.
CREATE TABLE IF NOT EXISTS allgroup (
    id INT NOT NULL AUTO_INCREMENT,
    groupname VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    groupdesc VARCHAR(200) NOT NULL DEFAULT '',
    PRIMARY KEY (id),
    UNIQUE KEY groupname (groupname)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Group membership. The primary key makes joining twice a duplicate-key
-- error; the key on userid lists a user's groups at login without a scan.
CREATE TABLE IF NOT EXISTS groupuser (
    groupid INT NOT NULL,
    userid INT NOT NULL,
    grouprole ENUM('creator', 'normal') NOT NULL,
    PRIMARY KEY (groupid, userid),
    KEY userid (userid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Messages kept for users who were offline, each exactly as it would have
-- been delivered live (a JSON object). The auto-increment id gives the order
-- they were stored in, and lets a login delete exactly the ones it delivered
-- (id <= the largest id sent) while newer ones wait for the next login.
-- MEDIUMTEXT: a message may be up to 64 KiB of UTF-8, more than TEXT holds.
CREATE TABLE IF NOT EXISTS offlinemessage (
    id BIGINT NOT NULL AUTO_INCREMENT,
    userid INT NOT NULL,
    message MEDIUMTEXT NOT NULL,
    PRIMARY KEY (id),
    KEY userid_id (userid, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Cluster presence. Each running ChatServer has a row here and refreshes its
-- heartbeat every few seconds; a server whose heartbeat is stale is dead
-- (even after kill -9), and its users count as offline.
CREATE TABLE IF NOT EXISTS server (
    id VARCHAR(100) NOT NULL,
    heartbeat DATETIME(3) NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Which server each logged-in user is on. A login may replace a row whose
-- server is dead; a live one means "this account is using". A user who
-- leaves keeps their row with server '' (no server has that id), so a
-- login and a leave are one UPDATE each.
CREATE TABLE IF NOT EXISTS online (
    userid INT NOT NULL,
    server VARCHAR(100) NOT NULL,
    PRIMARY KEY (userid),
    KEY server (server)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Resume tokens: one per user, that of their current session. Only a
-- BLAKE2b-256 hash of the token is kept. A token LOGIN checks it without a
-- password hash; LOGOUT deletes it, and every login replaces it.
CREATE TABLE IF NOT EXISTS token (
    userid INT NOT NULL,
    hash BINARY(32) NOT NULL,
    expires DATETIME NOT NULL,
    PRIMARY KEY (userid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
