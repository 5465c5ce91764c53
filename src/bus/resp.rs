//! The little of RESP (Redis's wire format) the bus speaks: commands out as
//! arrays of bulk strings, replies and pushes in. As in mini-redis, a reply
//! is first checked cheaply for completeness and only then parsed, so a
//! reader can take everything a read brought in one batch.

/// Appends one command (an array of bulk strings) to `out`.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    header(out, b'*', args.len());
    for arg in args {
        header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// One reply or push from Redis.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and the like.
    Status(Vec<u8>),
    /// `-ERR ...`.
    Error(Vec<u8>),
    Integer(i64),
    /// A bulk string; `None` is the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// An array (pub/sub pushes are arrays); `None` is the null array.
    Array(Option<Vec<Reply>>),
}

/// Why bytes from Redis could not be read as RESP.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// Deepest nesting accepted; Redis's own replies to the bus nest once.
const MAX_DEPTH: usize = 8;

/// Parses the first complete reply in `buf`: `Ok(None)` when more bytes are
/// needed, else the reply and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, Malformed> {
    let mut pos = 0;
    match value(buf, &mut pos, 0)? {
        Some(reply) => Ok(Some((reply, pos))),
        None => Ok(None),
    }
}

/// The line starting at `*pos` (without CRLF), moving past it.
fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let rest = buf.get(*pos..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    *pos += end + 2;
    Some(&rest[..end])
}

fn number(text: &[u8]) -> Result<i64, Malformed> {
    std::str::from_utf8(text).ok().and_then(|s| s.parse().ok()).ok_or(Malformed)
}

fn value(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Reply>, Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed);
    }
    let Some(&kind) = buf.get(*pos) else { return Ok(None) };
    *pos += 1;
    let Some(text) = line(buf, pos) else { return Ok(None) };
    Ok(Some(match kind {
        b'+' => Reply::Status(text.to_vec()),
        b'-' => Reply::Error(text.to_vec()),
        b':' => Reply::Integer(number(text)?),
        b'$' => {
            let len = number(text)?;
            if len < 0 {
                return Ok(Some(Reply::Bulk(None)));
            }
            let len = usize::try_from(len).map_err(|_| Malformed)?;
            let Some(body) = buf.get(*pos..*pos + len + 2) else { return Ok(None) };
            if &body[len..] != b"\r\n" {
                return Err(Malformed);
            }
            *pos += len + 2;
            Reply::Bulk(Some(body[..len].to_vec()))
        }
        b'*' => {
            let len = number(text)?;
            if len < 0 {
                return Ok(Some(Reply::Array(None)));
            }
            let mut items = Vec::new();
            for _ in 0..len {
                match value(buf, pos, depth + 1)? {
                    Some(item) => items.push(item),
                    None => return Ok(None),
                }
            }
            Reply::Array(Some(items))
        }
        _ => return Err(Malformed),
    }))
}

impl Reply {
    /// The parts of a pub/sub push (`message`, channel, payload), if it is one.
    pub fn into_push(self) -> Option<Vec<Vec<u8>>> {
        let Reply::Array(Some(items)) = self else { return None };
        items
            .into_iter()
            .map(|item| match item {
                Reply::Bulk(Some(bytes)) => Some(bytes),
                Reply::Integer(n) => Some(n.to_string().into_bytes()),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"PUBLISH", b"ch", b""]);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$0\r\n\r\n");
    }

    #[test]
    fn replies_parse_only_when_complete() {
        let push = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n:1\r\n";
        for cut in 0..push.len() - 4 {
            assert_eq!(parse(&push[..cut]), Ok(None), "cut at {cut}");
        }
        let (reply, used) = parse(push).unwrap().unwrap();
        assert_eq!(used, push.len() - 4);
        assert_eq!(reply.into_push().unwrap(), [b"message".to_vec(), b"ch".to_vec(), b"hello".to_vec()]);
        assert_eq!(parse(&push[used..]), Ok(Some((Reply::Integer(1), 4))));
        assert_eq!(parse(b"-ERR no\r\n"), Ok(Some((Reply::Error(b"ERR no".to_vec()), 9))));
        assert_eq!(parse(b"$-1\r\n"), Ok(Some((Reply::Bulk(None), 5))));
        assert_eq!(parse(b"?x\r\n"), Err(Malformed));
        assert_eq!(parse(b"$2\r\nabcd"), Err(Malformed));
    }
}
