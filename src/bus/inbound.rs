//! What other servers sent here: which numbers of each origin's stream this
//! server has taken, so a resent message is dropped instead of delivered
//! twice, and how far it can acknowledge. A message counts as done once it
//! is in its user's output, stored or forwarded; done messages of many
//! users finish out of order, and the acknowledgement covers the longest
//! run of done numbers.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Names one received message, so its completion can be reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub origin: Arc<str>,
    pub seq: u64,
}

/// What to do with a received data message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// New: deliver it and report it done.
    Take,
    /// Taken before; if `reack`, the origin missed the acknowledgement.
    Duplicate { reack: Option<u64> },
    /// An earlier one is missing: dropped, the origin resends from there.
    Gap,
}

/// An acknowledgement for one origin.
#[derive(Debug, PartialEq, Eq)]
pub struct Ack {
    pub origin: Arc<str>,
    /// Everything up to here is done.
    pub upto: u64,
    /// Done beyond `upto`.
    pub also: Vec<u64>,
}

#[derive(Default)]
struct Stream {
    /// Next number expected.
    expected: u64,
    /// Everything up to here is done and acknowledged.
    acked: u64,
    /// Done numbers above `acked`.
    done: BTreeSet<u64>,
}

#[derive(Default)]
pub struct Inbound {
    /// One stream per origin server.
    streams: HashMap<Arc<str>, Stream>,
}

impl Inbound {
    /// Decides on message `seq` from `origin`, which holds nothing below
    /// `floor` any more.
    pub fn receive(&mut self, origin: &str, seq: u64, floor: u64) -> (Verdict, Arc<str>) {
        let key = match self.streams.get_key_value(origin) {
            Some((k, _)) => Arc::clone(k),
            None => {
                let k: Arc<str> = origin.into();
                self.streams.insert(Arc::clone(&k), Stream { expected: 1, ..Stream::default() });
                k
            }
        };
        let Some(stream) = self.streams.get_mut(origin) else { return (Verdict::Gap, key) };
        if floor > stream.expected {
            // The origin stored those instead: they count as done here.
            stream.done.extend(stream.expected..floor);
            stream.expected = floor;
            advance(stream);
        }
        let verdict = if seq == stream.expected {
            stream.expected += 1;
            Verdict::Take
        } else if seq < stream.expected {
            Verdict::Duplicate { reack: (seq <= stream.acked).then_some(stream.acked) }
        } else {
            Verdict::Gap
        };
        (verdict, key)
    }

    /// Marks `tags` done; returns an acknowledgement per origin: how far
    /// its stream is done, and which of `tags` are done beyond that. Each
    /// message is acknowledged as soon as it is done, so the origin holds
    /// on to nothing that was written out, not even behind a slower one.
    pub fn complete(&mut self, tags: &[Tag]) -> Vec<Ack> {
        let mut acks: Vec<Ack> = Vec::new();
        for tag in tags {
            let Some(stream) = self.streams.get_mut(&tag.origin) else { continue };
            if tag.seq <= stream.acked {
                continue;
            }
            stream.done.insert(tag.seq);
            advance(stream);
            let index = match acks.iter().position(|a| a.origin == tag.origin) {
                Some(i) => i,
                None => {
                    acks.push(Ack { origin: Arc::clone(&tag.origin), upto: 0, also: Vec::new() });
                    acks.len() - 1
                }
            };
            acks[index].also.push(tag.seq);
        }
        for ack in &mut acks {
            let upto = self.streams.get(&ack.origin).map_or(0, |s| s.acked);
            ack.upto = upto;
            ack.also.retain(|&seq| seq > upto);
        }
        acks
    }
}

fn advance(stream: &mut Stream) {
    while stream.done.first() == Some(&(stream.acked + 1)) {
        stream.done.pop_first();
        stream.acked += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(seq: u64) -> Tag {
        Tag { origin: "o".into(), seq }
    }

    #[test]
    fn numbers_are_taken_once_in_order_and_acknowledged_in_runs() {
        let mut inbound = Inbound::default();
        assert_eq!(inbound.receive("o", 1, 1).0, Verdict::Take);
        assert_eq!(inbound.receive("o", 3, 1).0, Verdict::Gap);
        assert_eq!(inbound.receive("o", 2, 1).0, Verdict::Take);
        assert_eq!(inbound.receive("o", 2, 1).0, Verdict::Duplicate { reack: None });
        let ack = |upto, also: &[u64]| Ack { origin: "o".into(), upto, also: also.to_vec() };
        assert_eq!(inbound.complete(&[tag(2)]), [ack(0, &[2])], "acknowledged past a message not done");
        assert_eq!(inbound.complete(&[tag(1)]), [ack(2, &[])]);
        assert_eq!(inbound.receive("o", 1, 1).0, Verdict::Duplicate { reack: Some(2) });
        assert_eq!(inbound.receive("o", 3, 1).0, Verdict::Take);
    }

    #[test]
    fn a_floor_skips_what_the_origin_gave_up() {
        let mut inbound = Inbound::default();
        assert_eq!(inbound.receive("o", 1, 1).0, Verdict::Take);
        assert_eq!(inbound.receive("o", 5, 5).0, Verdict::Take);
        let ack = |upto, also: &[u64]| Ack { origin: "o".into(), upto, also: also.to_vec() };
        assert_eq!(inbound.complete(&[tag(5)]), [ack(0, &[5])]);
        assert_eq!(inbound.complete(&[tag(1)]), [ack(5, &[])]);
    }
}
