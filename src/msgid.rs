//! Message ids (`msgid`) of the wire protocol (SPEC §2), shared by the
//! server, the client and the benchmark. 1 to 11 are the original C++
//! ChatServer's; 12 and up are additions that older clients ignore.

pub const LOGIN: i64 = 1;
pub const LOGIN_ACK: i64 = 2;
pub const LOGOUT: i64 = 3;
pub const REG: i64 = 4;
pub const REG_ACK: i64 = 5;
pub const ONE_CHAT: i64 = 6;
pub const ADD_FRIEND: i64 = 7;
pub const CREATE_GROUP: i64 = 8;
pub const ADD_GROUP: i64 = 9;
pub const GROUP_CHAT: i64 = 10;
pub const ERROR: i64 = 11;
pub const ADD_FRIEND_ACK: i64 = 12;
pub const CREATE_GROUP_ACK: i64 = 13;
pub const ADD_GROUP_ACK: i64 = 14;
pub const PRESENCE: i64 = 15;
pub const PING: i64 = 16;
pub const PONG: i64 = 17;
