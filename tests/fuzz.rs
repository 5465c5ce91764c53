//! Fuzz-style tests of the two pieces that see raw client bytes: the frame
//! decoder and the request parser.
//!
//! A seeded xorshift generator (no extra crates) makes tens of thousands of
//! inputs: random bytes, valid messages and mutations of them (bit flips,
//! truncations, duplications, splices, inserted bytes), deep nesting, huge
//! numbers and invalid UTF-8. None may panic; every refusal must be errno
//! 100 or 101 (and its ERROR frame valid JSON); every accepted message must
//! agree with an independent reading of the JSON and survive a round trip.
//!
//! The seed is printed; set `FUZZ_SEED` to replay a run, `FUZZ_SCALE` (a
//! multiplier, default 1) to run longer.

use std::panic::{AssertUnwindSafe, catch_unwind};

use chatserver::net::{FrameDecoder, TooLarge};
use chatserver::service::protocol::{self, Errno};
use chatserver::service::request::{Request, Secret};
use serde_json::{Value, json};

const DEFAULT_SEED: u64 = 0x5eed_c0ff_ee12_3457;

// ------------------------------------------------------------------ random

/// xorshift64* : small, fast, good enough to explore inputs, and replayable.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // The state must never be zero.
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num/den`.
    fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn seed() -> u64 {
    let seed = match std::env::var("FUZZ_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("FUZZ_SEED={s:?} is not a number"))
        }
        Err(_) => DEFAULT_SEED,
    };
    eprintln!("fuzz seed: {seed:#x} (replay with FUZZ_SEED={seed:#x})");
    seed
}

fn scale() -> usize {
    std::env::var("FUZZ_SCALE").ok().and_then(|s| s.trim().parse().ok()).filter(|&n| n > 0).unwrap_or(1)
}

/// An input for a failure message: lossy text, cut short if long.
fn show(input: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(&input[..input.len().min(MAX)]).into_owned();
    if input.len() > MAX { format!("{text:?}... ({} bytes)", input.len()) } else { format!("{text:?}") }
}

// ------------------------------------------------------------- generators

const UNICODE: &[&str] = &[
    "hello",
    "你好",
    "привет",
    "😀🎉",
    "a\"b",
    "back\\slash",
    "line\nbreak",
    "tab\t",
    "nul\u{0}in",
    "é",
    "\u{7f}",
    "\u{ffff}",
    "\u{10ffff}",
    " ",
    "",
    "{\"msgid\":1}",
    "\r\n",
    "'; DROP TABLE user; --",
];

fn random_string(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => rng.pick(UNICODE).to_string(),
        1 => (0..rng.range(0, 40)).map(|_| char::from(rng.range(0x20, 0x7e) as u8)).collect(),
        2 => (0..rng.range(0, 12)).map(|_| *rng.pick(UNICODE)).collect(),
        _ => (0..rng.range(0, 20))
            .map(|_| {
                // Any scalar value, surrogates excluded by from_u32.
                loop {
                    if let Some(c) = char::from_u32(rng.below(0x11_0000) as u32) {
                        break c;
                    }
                }
            })
            .collect(),
    }
}

/// An integer, often at or across the edges of i32 and i64.
fn random_int(rng: &mut Rng) -> Value {
    let edges: &[i64] = &[
        0,
        1,
        -1,
        2,
        42,
        i64::from(i32::MAX),
        i64::from(i32::MAX) + 1,
        i64::from(i32::MIN),
        i64::from(i32::MIN) - 1,
        i64::MAX,
        i64::MIN,
    ];
    match rng.below(4) {
        0 => json!(*rng.pick(edges)),
        1 => json!(u64::MAX),
        2 => json!(rng.below(1000) as i64 - 10),
        _ => json!(rng.next() as i64 >> rng.below(63)),
    }
}

/// A value of any JSON type, shallow.
fn random_value(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0 => Value::Null,
        1 => json!(rng.chance(1, 2)),
        2 => random_int(rng),
        3 => json!(rng.below(1000) as f64 / 7.0),
        4 => json!(random_string(rng)),
        5 => json!([random_string(rng), 1]),
        6 => json!({"k": random_string(rng)}),
        _ => json!(1.0),
    }
}

const CLIENT_MSGIDS: &[i64] = &[1, 3, 4, 6, 7, 8, 9, 10, 16];

/// The fields a request with `msgid` needs, with values of the right type.
fn fields_for(rng: &mut Rng, msgid: i64) -> Vec<(String, Value)> {
    let int = |rng: &mut Rng| if rng.chance(3, 4) { json!(rng.below(100_000) as i64) } else { random_int(rng) };
    let names: &[&str] = match msgid {
        1 => &["id:int", "password:str"],
        3 => &["id:int"],
        4 => &["name:str", "password:str"],
        6 => &["toid:int", "msg:str"],
        7 => &["friendid:int"],
        8 => &["groupname:str", "groupdesc:str"],
        9 => &["groupid:int"],
        10 => &["groupid:int", "msg:str"],
        _ => &[],
    };
    names
        .iter()
        .map(|spec| {
            let (name, kind) = spec.split_once(':').expect("name:kind");
            let value = if kind == "int" { int(rng) } else { json!(random_string(rng)) };
            (name.to_string(), value)
        })
        .collect()
}

/// A JSON object as text, its members in the given order (serde_json's map
/// would sort them), compact or with random whitespace.
fn object_text(rng: &mut Rng, members: &[(String, Value)]) -> Vec<u8> {
    let spaced = rng.chance(1, 5);
    let ws = |rng: &mut Rng| if spaced { *rng.pick(&["", " ", "\t", " \r ", "  "]) } else { "" };
    let mut out = String::from("{");
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(ws(rng));
        out.push_str(&serde_json::to_string(k).expect("key"));
        out.push_str(ws(rng));
        out.push(':');
        out.push_str(ws(rng));
        out.push_str(&serde_json::to_string(v).expect("value"));
        out.push_str(ws(rng));
    }
    out.push('}');
    out.into_bytes()
}

/// A message that is valid (or nearly: some get a field of the wrong type,
/// a missing field, an unknown msgid or extra members).
fn message(rng: &mut Rng) -> Vec<u8> {
    let msgid = if rng.chance(9, 10) { *rng.pick(CLIENT_MSGIDS) } else { rng.range(0, 40) as i64 - 5 };
    let mut members = vec![("msgid".to_string(), json!(msgid))];
    members.extend(fields_for(rng, msgid));
    if rng.chance(1, 4) {
        // The original clients send their own id and name along.
        members.push(("id".to_string(), random_value(rng)));
        members.push(("name".to_string(), random_value(rng)));
    }
    if rng.chance(1, 6) && members.len() > 1 {
        let i = rng.below(members.len());
        members[i].1 = random_value(rng);
    }
    if rng.chance(1, 8) && members.len() > 1 {
        let i = rng.below(members.len());
        members.remove(i);
    }
    if rng.chance(1, 10) {
        // A duplicated key.
        let i = rng.below(members.len());
        let dup = (members[i].0.clone(), random_value(rng));
        members.push(dup);
    }
    // Shuffle the members.
    for i in (1..members.len()).rev() {
        let j = rng.below(i + 1);
        members.swap(i, j);
    }
    object_text(rng, &members)
}

/// Nesting `depth` levels deep, alone or as the value of a member of an
/// otherwise valid request.
fn deep(rng: &mut Rng) -> Vec<u8> {
    let depth = *rng.pick(&[10, 100, 127, 128, 129, 200, 1_000, 10_000, 50_000]);
    let (open, close) = if rng.chance(1, 2) { ("[", "]") } else { ("{\"a\":", "}") };
    let mut inner = format!("{}1{}", open.repeat(depth), close.repeat(depth));
    if rng.chance(1, 4) {
        // Unbalanced: never closed.
        inner = open.repeat(depth);
    }
    if rng.chance(1, 2) { format!("{{\"msgid\":16,\"x\":{inner}}}").into_bytes() } else { inner.into_bytes() }
}

const HUGE: &[&str] = &[
    "1e999",
    "-1e999",
    "1e-999",
    "99999999999999999999999999999",
    "-99999999999999999999999999999",
    "18446744073709551616",
    "9223372036854775808",
    "-9223372036854775809",
    "2147483648",
    "-2147483649",
    "1.0",
    "1.5",
    "-0",
    "0e0",
    "1E2",
    "00",
    "+1",
    "0x10",
    "NaN",
    "Infinity",
    "1e",
    ".5",
];

/// A request whose msgid or int field is a huge or odd number.
fn huge_number(rng: &mut Rng) -> Vec<u8> {
    let n = rng.pick(HUGE);
    let s = match rng.below(4) {
        0 => format!("{{\"msgid\":{n}}}"),
        1 => format!("{{\"msgid\":6,\"toid\":{n},\"msg\":\"x\"}}"),
        2 => format!("{{\"msgid\":1,\"id\":{n},\"password\":\"p\"}}"),
        _ => format!("{{\"msgid\":16,\"n\":{n}}}"),
    };
    s.into_bytes()
}

/// A message with bytes that are not UTF-8, or escapes of lone surrogates.
fn bad_utf8(rng: &mut Rng) -> Vec<u8> {
    let bad: &[&[u8]] = &[
        b"\xff",
        b"\xfe\xff",
        b"\xc0\x80",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe4\xbd",
        b"\x80",
        b"\\ud800",
        b"\\udfff",
        b"\\ud800\\u0041",
    ];
    let mut m = message(rng);
    let b = rng.pick(bad);
    // Inside a string if there is one, else anywhere.
    let at = m.iter().rposition(|&c| c == b'"').filter(|&i| i > 0).unwrap_or_else(|| rng.below(m.len() + 1));
    m.splice(at..at, b.iter().copied());
    m
}

/// One random change to `m`.
fn mutate_once(rng: &mut Rng, m: &mut Vec<u8>, other: &[u8]) {
    let len = m.len();
    match rng.below(8) {
        0 if len > 0 => {
            let i = rng.below(len);
            m[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => m.truncate(rng.below(len)),
        2 if len > 0 => {
            let a = rng.below(len);
            let b = rng.range(a, len);
            let copy = m[a..b].to_vec();
            let at = rng.below(m.len() + 1);
            m.splice(at..at, copy);
        }
        3 => {
            // Splice: our head, the other's tail.
            let a = rng.below(len + 1);
            let b = rng.below(other.len() + 1);
            m.truncate(a);
            m.extend_from_slice(&other[b..]);
        }
        4 => {
            let at = rng.below(len + 1);
            let byte = *rng.pick(b"{}[]\":,\\0 -e.\x00\n\r\xff");
            m.insert(at, byte);
        }
        5 if len > 0 => {
            let a = rng.below(len);
            let b = rng.range(a, len);
            m.drain(a..b);
        }
        6 if len > 0 => {
            let i = rng.below(len);
            m[i] = rng.next() as u8;
        }
        _ => {
            let at = rng.below(len + 1);
            let token = *rng.pick(&["null", "true", "1e999", "\"", "{", "}", "[", "]", ",", ":", "\"msgid\":"]);
            m.splice(at..at, token.bytes());
        }
    }
}

fn mutated(rng: &mut Rng) -> Vec<u8> {
    let mut m = message(rng);
    let other = message(rng);
    for _ in 0..rng.range(1, 4) {
        mutate_once(rng, &mut m, &other);
    }
    m
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = rng.range(0, 200);
    if rng.chance(1, 3) {
        // Printable, JSON-ish noise.
        (0..len).map(|_| *rng.pick(b"{}[]\":,0123456789abcdefmsgidnultrue \\")).collect()
    } else {
        rng.bytes(len)
    }
}

/// Inputs that are not (the frame of) a JSON object of a request.
const FIXED: &[&str] = &[
    "",
    "[]",
    "{}",
    "\"x\"",
    "1",
    "null",
    "true",
    "{\"msgid\":\"1\"}",
    "{\"msgid\":99}",
    "{\"msgid\":1}",
    "{\"msgid\":1,\"id\":\"3\",\"password\":\"p\"}",
    "{\"msgid\":1,\"id\":3,\"password\":null}",
    "{\"msgid\":1,\"id\":3.0,\"password\":\"p\"}",
    "{\"msgid\":4,\"name\":[],\"password\":\"p\"}",
    "{\"msgid\":6,\"toid\":{},\"msg\":\"x\"}",
    "{\"msgid\":6,\"toid\":1,\"msg\":1}",
    "{\"msgid\":8,\"groupname\":\"g\",\"groupdesc\":5}",
    "{\"msgid\":null}",
    "{\"msgid\":16.0}",
    "{\"msgid\":-1}",
    "{\"msgid\":2}",
    "{\"msgid\":11}",
    "{\"msgid\":17}",
    "{\"msgid\":16}garbage",
    "{\"msgid\":16}{\"msgid\":16}",
    "{\"msgid\":16,}",
    "{'msgid':16}",
    "{msgid:16}",
    "\u{feff}{\"msgid\":16}",
];

// ----------------------------------------------------------------- oracle

/// How a frame must be answered, read from the JSON independently of the
/// parser under test.
#[derive(Debug)]
enum Expect {
    /// Not JSON, not an object, no integer msgid, a field missing or of the
    /// wrong type: errno 100.
    Malformed,
    /// An object with an integer msgid the server does not serve: 101.
    Unknown,
    /// A request the server must accept, as this one.
    Accept(Request<'static>),
}

fn oracle(frame: &[u8]) -> Expect {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(frame) else {
        return Expect::Malformed;
    };
    let Some(msgid) = obj.get("msgid").and_then(Value::as_i64) else {
        return Expect::Malformed;
    };
    let int = |k: &str| obj.get(k).and_then(Value::as_i64).and_then(|n| i32::try_from(n).ok());
    let string = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    let request = match msgid {
        1 => int("id")
            .zip(string("password"))
            .map(|(id, password)| Request::Login { id, secret: Secret::Password(password) }),
        3 => Some(Request::Logout),
        4 => string("name").zip(string("password")).map(|(name, password)| Request::Register { name, password }),
        6 => int("toid").zip(string("msg")).map(|(toid, msg)| Request::OneChat { toid, msg: msg.into() }),
        7 => int("friendid").map(|friendid| Request::AddFriend { friendid }),
        8 => {
            let desc = match obj.get("groupdesc") {
                None | Some(Value::Null) => Some(String::new()),
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => None,
            };
            string("groupname").zip(desc).map(|(name, desc)| Request::CreateGroup { name, desc })
        }
        9 => int("groupid").map(|groupid| Request::AddGroup { groupid }),
        10 => int("groupid").zip(string("msg")).map(|(groupid, msg)| Request::GroupChat { groupid, msg: msg.into() }),
        16 => Some(Request::Ping),
        _ => return Expect::Unknown,
    };
    request.map_or(Expect::Malformed, Expect::Accept)
}

/// The request as a client would send it.
fn to_json(r: &Request) -> Value {
    match r {
        Request::Login { id, secret: Secret::Password(password) } => {
            json!({"msgid": 1, "id": id, "password": password})
        }
        Request::Login { id, secret: Secret::Token(token) } => json!({"msgid": 1, "id": id, "token": token}),
        Request::Logout => json!({"msgid": 3}),
        Request::Register { name, password } => json!({"msgid": 4, "name": name, "password": password}),
        Request::OneChat { toid, msg } => json!({"msgid": 6, "toid": toid, "msg": msg}),
        Request::AddFriend { friendid } => json!({"msgid": 7, "friendid": friendid}),
        Request::CreateGroup { name, desc } => json!({"msgid": 8, "groupname": name, "groupdesc": desc}),
        Request::AddGroup { groupid } => json!({"msgid": 9, "groupid": groupid}),
        Request::GroupChat { groupid, msg } => json!({"msgid": 10, "groupid": groupid, "msg": msg}),
        Request::Ping => json!({"msgid": 16}),
    }
}

/// Tallies of what the parser did.
#[derive(Default, Debug)]
struct Tally {
    inputs: usize,
    accepted: usize,
    malformed: usize,
    unknown: usize,
}

/// Parses `frame` and checks the outcome against the oracle; returns a
/// description of the problem, if any.
fn check_parse(frame: &[u8], tally: &mut Tally) -> Result<(), String> {
    tally.inputs += 1;
    let result = catch_unwind(|| Request::parse(frame)).map_err(|_| "Request::parse panicked".to_string())?;
    let expect = oracle(frame);
    match (&result, &expect) {
        (Err(errno), _) => {
            match errno {
                Errno::Malformed => tally.malformed += 1,
                Errno::UnknownMsgid => tally.unknown += 1,
                other => return Err(format!("refused with {other:?}, which is neither 100 nor 101")),
            }
            // The reply the server would send must be a valid ERROR frame.
            let reply = protocol::error(*errno);
            let v: Value =
                serde_json::from_str(&reply).map_err(|e| format!("ERROR reply is not JSON ({e}): {reply}"))?;
            if v["msgid"] != 11 || v["errno"] != errno.code() || !v["msg"].is_string() || reply.contains('\0') {
                return Err(format!("ERROR reply is not an ERROR with errno {}: {reply}", errno.code()));
            }
        }
        (Ok(_), _) => tally.accepted += 1,
    }
    match (result, expect) {
        (Err(Errno::Malformed), Expect::Malformed) | (Err(Errno::UnknownMsgid), Expect::Unknown) => Ok(()),
        (Ok(got), Expect::Accept(want)) => {
            if got != want {
                return Err(format!("parsed as {got:?}, the JSON says {want:?}"));
            }
            // Round trip: what the request means, sent again, means the same.
            let again = serde_json::to_vec(&to_json(&got)).expect("serialize");
            match Request::parse(&again) {
                Ok(back) if back == got => Ok(()),
                other => Err(format!("round trip of {got:?} via {} gave {other:?}", show(&again))),
            }
        }
        (got, want) => Err(format!("parse gave {got:?}, expected {want:?}")),
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn request_parse_survives_random_and_mutated_input() {
    let mut rng = Rng::new(seed());
    let rounds = 40_000 * scale();
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    let mut check = |input: Vec<u8>, kind: &str, tally: &mut Tally| {
        if let Err(problem) = check_parse(&input, tally)
            && failures.len() < 20
        {
            failures.push(format!("[{kind}] {}: {problem}", show(&input)));
        }
    };
    for fixed in FIXED {
        check(fixed.as_bytes().to_vec(), "fixed", &mut tally);
    }
    for _ in 0..rounds {
        let (kind, input) = match rng.below(10) {
            0 | 1 => ("random bytes", random_bytes(&mut rng)),
            2 | 3 => ("message", message(&mut rng)),
            4..=6 => ("mutated", mutated(&mut rng)),
            7 => ("deep", deep(&mut rng)),
            8 => ("huge number", huge_number(&mut rng)),
            _ => ("bad utf-8", bad_utf8(&mut rng)),
        };
        check(input, kind, &mut tally);
    }
    eprintln!("{tally:?}");
    assert!(failures.is_empty(), "{} problem(s) (first 20):\n{}", failures.len(), failures.join("\n"));
    // The generator must have reached every outcome, or it tests little.
    assert!(tally.inputs >= 20_000, "{tally:?}");
    assert!(tally.accepted > rounds / 20, "too few accepted inputs: {tally:?}");
    assert!(tally.malformed > rounds / 5, "too few malformed inputs: {tally:?}");
    assert!(tally.unknown > 100, "too few unknown msgids: {tally:?}");
}

#[test]
fn deep_nesting_and_huge_numbers_are_refused_as_malformed() {
    for depth in [129, 1_000, 10_000, 100_000, 1_000_000] {
        for inner in [format!("{}{}", "[".repeat(depth), "]".repeat(depth)), "[".repeat(depth)] {
            assert_eq!(Request::parse(inner.as_bytes()), Err(Errno::Malformed), "depth {depth}");
            let wrapped = format!("{{\"msgid\":16,\"x\":{inner}}}");
            assert_eq!(Request::parse(wrapped.as_bytes()), Err(Errno::Malformed), "wrapped, depth {depth}");
        }
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert_eq!(Request::parse(objects.as_bytes()), Err(Errno::Malformed), "objects, depth {depth}");
    }
    for text in [r#"{"msgid":1e999}"#, r#"{"msgid":6,"toid":1e999,"msg":"x"}"#, r#"{"msgid":16,"n":1e999}"#] {
        assert_eq!(Request::parse(text.as_bytes()), Err(Errno::Malformed), "{text}");
    }
    for n in HUGE {
        for text in [
            format!("{{\"msgid\":{n}}}"),
            format!("{{\"msgid\":6,\"toid\":{n},\"msg\":\"x\"}}"),
            format!("{{\"msgid\":1,\"id\":{n},\"password\":\"p\"}}"),
            format!("{{\"msgid\":16,\"n\":{n}}}"),
        ] {
            let mut tally = Tally::default();
            if let Err(problem) = check_parse(text.as_bytes(), &mut tally) {
                panic!("{text}: {problem}");
            }
            // Only -0 is an integer (0) among them; in an i32 field every
            // other one is refused.
            if *n != "-0" && !text.starts_with("{\"msgid\":16") && !text.starts_with(&format!("{{\"msgid\":{n}")) {
                assert_eq!(Request::parse(text.as_bytes()), Err(Errno::Malformed), "{text}");
            }
        }
    }
}

// ----------------------------------------------------------- frame decoder

/// Feeds `chunks` to a decoder of `max`, collecting frames; stops at the
/// first error.
fn decode(max: usize, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Result<(), TooLarge>) {
    let mut decoder = FrameDecoder::new(max);
    let mut frames = Vec::new();
    for chunk in chunks {
        let fed = decoder.feed(chunk, |f| {
            frames.push(f.to_vec());
            true
        });
        if fed.is_err() {
            return (frames, fed);
        }
    }
    (frames, Ok(()))
}

/// Cuts `stream` at random points (sometimes one byte at a time).
fn random_chunks<'a>(rng: &mut Rng, stream: &'a [u8]) -> Vec<&'a [u8]> {
    if rng.chance(1, 10) {
        return stream.chunks(1).collect();
    }
    let mut chunks = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = match rng.below(3) {
            0 => rng.range(1, 8),
            1 => rng.range(1, 200),
            _ => rng.range(1, 70_000),
        }
        .min(rest.len());
        let (head, tail) = rest.split_at(n);
        chunks.push(head);
        rest = tail;
    }
    chunks
}

/// A message body for the decoder: anything without a terminator in it
/// (terminators are added between bodies), of a length away from the limit
/// (the exact edge has its own test).
fn body(rng: &mut Rng, max: usize) -> Vec<u8> {
    let mut b = match rng.below(40) {
        0 => {
            // Oversize.
            let n = rng.range(max + 10, max + 3_000);
            (0..n).map(|_| b'a' + rng.below(26) as u8).collect()
        }
        1 | 2 => Vec::new(),
        3..=8 => random_bytes(rng),
        9..=24 => message(rng),
        25..=34 => mutated(rng),
        _ => bad_utf8(rng),
    };
    b.retain(|&c| c != 0 && c != b'\n');
    if rng.chance(1, 20) {
        b.push(b'\r');
    }
    if b.len() + 2 >= max && b.len() <= max + 2 {
        b.truncate(max.saturating_sub(3));
    }
    b
}

#[test]
fn frame_decoder_survives_random_streams_cut_anywhere() {
    let mut rng = Rng::new(seed() ^ 0xdec0de);
    let streams = 6_000 * scale();
    let mut tally = Tally::default();
    let mut frames_checked = 0usize;
    let mut too_large_seen = 0usize;
    for round in 0..streams {
        let max = *rng.pick(&[64, 300, 4096, 65_536, 65_536]);
        let bodies: Vec<Vec<u8>> = (0..rng.range(1, 12)).map(|_| body(&mut rng, max)).collect();
        let mut stream = Vec::new();
        for (i, b) in bodies.iter().enumerate() {
            stream.extend_from_slice(b);
            let last = i + 1 == bodies.len();
            if !(last && rng.chance(1, 5)) {
                let terms: [&[u8]; 5] = [b"\0", b"\n", b"\r\n", b"\0\0", b"\n\0"];
                let term: &[u8] = terms[rng.below(terms.len())];
                stream.extend_from_slice(term);
            }
        }
        // What must come out: each terminated, non-empty body (without a
        // carriage return before its terminator), up to the first body over
        // the limit; an unterminated tail never comes out.
        let terminated = stream.last().is_some_and(|&c| c == 0 || c == b'\n');
        let raw: Vec<&[u8]> = stream.split(|&c| c == 0 || c == b'\n').collect();
        let (complete, tail) =
            if terminated { (&raw[..raw.len() - 1], None) } else { (&raw[..raw.len() - 1], raw.last()) };
        let oversize = complete.iter().position(|f| f.len() > max + 1);
        let expected: Vec<Vec<u8>> = complete[..oversize.unwrap_or(complete.len())]
            .iter()
            .map(|f| f.strip_suffix(b"\r").unwrap_or(f).to_vec())
            .filter(|f| !f.is_empty())
            .collect();
        let tail_oversize = tail.is_some_and(|t| t.len() > max + 1);

        let chunks = random_chunks(&mut rng, &stream);
        let (frames, result) = match catch_unwind(AssertUnwindSafe(|| decode(max, &chunks))) {
            Ok(r) => r,
            Err(_) => panic!("round {round}: FrameDecoder panicked on {} (max {max})", show(&stream)),
        };
        let context = || format!("round {round}, max {max}, {} chunks, stream {}", chunks.len(), show(&stream));
        assert_eq!(frames.len().min(expected.len()), frames.len(), "more frames than sent: {}", context());
        assert!(frames == expected[..frames.len()], "frames differ from what was sent: {}", context());
        match result {
            Ok(()) => {
                assert!(oversize.is_none(), "a frame over {max} bytes was not refused: {}", context());
                assert_eq!(frames.len(), expected.len(), "frames missing: {}", context());
            }
            Err(TooLarge) => {
                too_large_seen += 1;
                assert!(
                    oversize.is_some() || tail_oversize,
                    "TooLarge without any frame over {max} bytes: {}",
                    context()
                );
                if oversize.is_some() {
                    assert_eq!(frames.len(), expected.len(), "frames before the oversize one missing: {}", context());
                }
            }
        }
        // Every frame that came out goes to the parser as it would on the
        // server.
        for f in &frames {
            frames_checked += 1;
            if let Err(problem) = check_parse(f, &mut tally) {
                panic!("round {round}: frame {}: {problem}", show(f));
            }
        }
    }
    eprintln!("{frames_checked} frames, {too_large_seen} streams refused as too large; parser: {tally:?}");
    assert!(frames_checked >= 20_000, "only {frames_checked} frames were checked");
    assert!(too_large_seen > streams / 50, "too few oversize streams: {too_large_seen}");
}

#[test]
fn frame_decoder_limit_edges_and_early_stop() {
    // Exactly the limit passes, one byte over is refused, also split.
    for max in [64, 65_536] {
        let at = vec![b'x'; max];
        let mut ok = at.clone();
        ok.push(0);
        let (frames, result) = decode(max, &[&ok]);
        assert_eq!((frames.len(), result), (1, Ok(())), "a frame of exactly {max} bytes");
        let (frames, result) = decode(max, &ok.chunks(7).collect::<Vec<_>>());
        assert_eq!((frames.len(), result), (1, Ok(())), "a frame of exactly {max} bytes, split");
        let mut over = vec![b'x'; max + 1];
        over.push(0);
        assert_eq!(decode(max, &[&over]).1, Err(TooLarge), "{} bytes", max + 1);
        assert_eq!(decode(max, &over.chunks(5).collect::<Vec<_>>()).1, Err(TooLarge), "{} bytes, split", max + 1);
        // A never-ending frame is refused before it ends.
        let endless = vec![b'y'; max * 3];
        assert_eq!(decode(max, &endless.chunks(1000).collect::<Vec<_>>()).1, Err(TooLarge), "endless");
    }
    // on_frame returning false stops at once; nothing after is handed out.
    let mut rng = Rng::new(seed() ^ 0x570b);
    for _ in 0..2_000 {
        let n = rng.range(1, 10);
        let mut stream = Vec::new();
        for i in 0..n {
            stream.extend_from_slice(format!("{{\"msgid\":16,\"n\":{i}}}\0").as_bytes());
        }
        let stop_after = rng.range(1, n);
        let mut decoder = FrameDecoder::new(1024);
        let mut seen = Vec::new();
        for chunk in random_chunks(&mut rng, &stream) {
            let mut stopped = false;
            decoder
                .feed(chunk, |f| {
                    seen.push(f.to_vec());
                    stopped = seen.len() == stop_after;
                    !stopped
                })
                .expect("no frame is too large");
            if stopped {
                break;
            }
        }
        assert_eq!(seen.len(), stop_after, "frames handed out after on_frame returned false");
        let last: Value = serde_json::from_slice(seen.last().expect("one frame")).expect("JSON");
        assert_eq!(last["n"], stop_after - 1, "frames out of order");
    }
}

#[test]
fn rng_is_deterministic_and_spread() {
    // The generator itself: same seed, same sequence; values spread out.
    let a: Vec<u64> = (0..100).scan(Rng::new(7), |r, _| Some(r.next())).collect();
    let b: Vec<u64> = (0..100).scan(Rng::new(7), |r, _| Some(r.next())).collect();
    assert_eq!(a, b);
    let mut rng = Rng::new(7);
    let mut buckets = [0usize; 10];
    for _ in 0..10_000 {
        buckets[rng.below(10)] += 1;
    }
    assert!(buckets.iter().all(|&n| (800..1200).contains(&n)), "{buckets:?}");
}
