//! What travels in a PUBLISH: one line of header, then for data the frame.
//!
//! - data to a server's inbox: `D <origin> <seq> <floor> <to> <k|p><hops>\n<frame>`
//! - acknowledgement to a server's inbox: `A <from> <upto> [<seq> ...]`
//! - a session taken over: `K <from> <user>` to the inbox of the server
//!   that held it
//! - presence on the cluster channel: `+ <server> <user> ...` (logged in
//!   there) and `- <server> <user> ...` (left it)
//! - a group gained a member, on the cluster channel: `G <server> <group>`
//!
//! Server ids contain no spaces or newlines (see `ChatServer`'s server_id).

/// One message published on the bus, parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Envelope<'a> {
    Data(Data<'a>),
    /// `from` has taken everything up to `upto` that this server sent it,
    /// and also the numbers in `also` (done out of turn).
    Ack {
        from: &'a str,
        upto: u64,
        also: Vec<u64>,
    },
    /// `from` took over `user`'s session on this server.
    Replaced {
        from: &'a str,
        user: i32,
    },
    /// A member was added to `group` on `from`.
    GroupChanged {
        from: &'a str,
        group: i32,
    },
    /// `server` holds these users now (`online`) or no longer (`!online`).
    Presence {
        server: &'a str,
        online: bool,
        users: Vec<i32>,
    },
}

/// A frame for a user, sent from `origin` as number `seq` of its stream to
/// this server.
#[derive(Debug, PartialEq, Eq)]
pub struct Data<'a> {
    pub origin: &'a str,
    pub seq: u64,
    /// The oldest number the origin still holds: it gave up on the ones
    /// below (stored them instead), so the receiver must not wait for them.
    pub floor: u64,
    pub to: i32,
    /// Stored if the user is gone (chat), or dropped (presence).
    pub keep: bool,
    /// Servers it went through before: at most one forward after the first.
    pub hops: u8,
    pub frame: &'a str,
}

/// Appends the data envelope to `out`.
pub fn data(out: &mut Vec<u8>, d: &Data<'_>) {
    use std::io::Write;
    let flag = if d.keep { 'k' } else { 'p' };
    let _ = write!(out, "D {} {} {} {} {flag}{}\n{}", d.origin, d.seq, d.floor, d.to, d.hops, d.frame);
}

pub fn ack(from: &str, upto: u64, also: &[u64]) -> String {
    let mut text = format!("A {from} {upto}");
    for seq in also {
        text.push(' ');
        text.push_str(&seq.to_string());
    }
    text
}

pub fn replaced(from: &str, user: i32) -> String {
    format!("K {from} {user}")
}

pub fn group_changed(from: &str, group: i32) -> String {
    format!("G {from} {group}")
}

pub fn presence(server: &str, online: bool, users: &[i32]) -> String {
    let mut text = format!("{} {server}", if online { '+' } else { '-' });
    for user in users {
        text.push(' ');
        text.push_str(&user.to_string());
    }
    text
}

/// Parses a payload; None for anything malformed (ignored by the caller: an
/// invalid message from the bus affects only itself).
pub fn parse(payload: &str) -> Option<Envelope<'_>> {
    let (head, frame) = payload.split_once('\n').unwrap_or((payload, ""));
    let mut words = head.split(' ');
    match words.next()? {
        "D" => {
            let origin = words.next()?;
            let seq = words.next()?.parse().ok()?;
            let floor = words.next()?.parse().ok()?;
            let to = words.next()?.parse().ok()?;
            let flags = words.next()?;
            let keep = match flags.as_bytes().first()? {
                b'k' => true,
                b'p' => false,
                _ => return None,
            };
            let hops = flags.get(1..)?.parse().ok()?;
            Some(Envelope::Data(Data { origin, seq, floor, to, keep, hops, frame }))
        }
        "A" => {
            let from = words.next()?;
            let upto = words.next()?.parse().ok()?;
            let also = words.map(|w| w.parse().ok()).collect::<Option<Vec<u64>>>()?;
            Some(Envelope::Ack { from, upto, also })
        }
        "K" => {
            let from = words.next()?;
            let user = words.next()?.parse().ok()?;
            Some(Envelope::Replaced { from, user })
        }
        "G" => {
            let from = words.next()?;
            let group = words.next()?.parse().ok()?;
            Some(Envelope::GroupChanged { from, group })
        }
        sign @ ("+" | "-") => {
            let server = words.next()?;
            let users = words.map(|w| w.parse().ok()).collect::<Option<Vec<i32>>>()?;
            Some(Envelope::Presence { server, online: sign == "+", users })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_parse_back() {
        let sent = Data {
            origin: "127.0.0.1:6000/7/9",
            seq: 42,
            floor: 40,
            to: -3,
            keep: true,
            hops: 1,
            frame: "{\"msgid\":6,\"msg\":\"a\nb\"}",
        };
        let mut out = Vec::new();
        data(&mut out, &sent);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(parse(&text), Some(Envelope::Data(sent)));
        assert_eq!(parse(&ack("s1", 7, &[])), Some(Envelope::Ack { from: "s1", upto: 7, also: vec![] }));
        assert_eq!(parse(&ack("s1", 7, &[9, 12])), Some(Envelope::Ack { from: "s1", upto: 7, also: vec![9, 12] }));
        assert_eq!(
            parse(&presence("s2", false, &[1, 2])),
            Some(Envelope::Presence { server: "s2", online: false, users: vec![1, 2] })
        );
        assert_eq!(
            parse(&presence("s2", true, &[])),
            Some(Envelope::Presence { server: "s2", online: true, users: vec![] })
        );
        assert_eq!(parse(&group_changed("s3", 12)), Some(Envelope::GroupChanged { from: "s3", group: 12 }));
        for bad in ["", "X", "D s 1 1 2 x0\n{}", "D s one 1 2 k0\n{}", "D s 1 2 k0\n{}", "A s", "+ s x", "G s"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
