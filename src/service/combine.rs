//! Flat combining: threads hand in one request each, and one of them at a
//! time carries out everything handed in so far as one batch while the
//! others wait for their answers. MariaDB's cost is per statement far more
//! than per row, so a storm of logins or leaves costs a few statements per
//! batch instead of a few per user; a lone request runs at once, alone.

use std::collections::HashMap;

use parking_lot::{Condvar, Mutex};

pub struct Combiner<R, T> {
    /// What waits, what is answered, and whether a batch runs.
    state: Mutex<State<R, T>>,
    /// Signalled when a batch ends: its answers are in, and another caller
    /// may take the lead.
    answered: Condvar,
    /// Most requests in one batch, so one statement stays of bounded size
    /// (and one of few shapes in each connection's statement cache).
    most: usize,
}

struct State<R, T> {
    /// Requests not yet taken by a batch, by ticket.
    waiting: Vec<(u64, R)>,
    /// Answers of finished batches, until their callers take them; None
    /// when the batch failed.
    answers: HashMap<u64, Option<T>>,
    /// A caller is carrying out a batch.
    running: bool,
    /// The next ticket.
    next: u64,
}

impl<R, T> Combiner<R, T> {
    pub fn new(most: usize) -> Combiner<R, T> {
        let state = State { waiting: Vec::new(), answers: HashMap::new(), running: false, next: 0 };
        Combiner { state: Mutex::new(state), answered: Condvar::new(), most: most.max(1) }
    }

    /// Hands in `request` and returns its answer, running batches (with
    /// `run`, which every caller passes alike) whenever no one else is.
    /// `run` answers its requests in their order, or None when the whole
    /// batch failed (an error, or a panic, which is then the caller's own
    /// again); None comes back then, for the caller to retry alone.
    pub fn submit(&self, request: R, run: impl Fn(Vec<R>) -> Option<Vec<T>>) -> Option<T> {
        let mut state = self.state.lock();
        let ticket = state.next;
        state.next += 1;
        state.waiting.push((ticket, request));
        loop {
            if let Some(answer) = state.answers.remove(&ticket) {
                return answer;
            }
            if state.running {
                self.answered.wait(&mut state);
                continue;
            }
            state.running = true;
            let take = state.waiting.len().min(self.most);
            let (tickets, requests): (Vec<u64>, Vec<R>) = state.waiting.drain(..take).unzip();
            let batch = Batch { combiner: self, tickets, answered: false };
            drop(state);
            let answers = run(requests);
            state = self.state.lock();
            batch.answer(&mut state, answers);
        }
    }
}

/// A batch being carried out: when it ends, however it ends, its callers
/// get answers and the lead is free.
struct Batch<'a, R, T> {
    combiner: &'a Combiner<R, T>,
    tickets: Vec<u64>,
    answered: bool,
}

impl<R, T> Batch<'_, R, T> {
    fn answer(mut self, state: &mut State<R, T>, answers: Option<Vec<T>>) {
        let tickets = std::mem::take(&mut self.tickets);
        match answers {
            Some(answers) if answers.len() == tickets.len() => {
                state.answers.extend(tickets.into_iter().zip(answers.into_iter().map(Some)));
            }
            _ => state.answers.extend(tickets.into_iter().map(|t| (t, None))),
        }
        state.running = false;
        self.answered = true;
        self.combiner.answered.notify_all();
    }
}

impl<R, T> Drop for Batch<'_, R, T> {
    fn drop(&mut self) {
        // Unwinding from `run`: the waiting callers must not wait forever.
        if !self.answered {
            let mut state = self.combiner.state.lock();
            state.answers.extend(self.tickets.drain(..).map(|t| (t, None)));
            state.running = false;
            self.combiner.answered.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::Combiner;

    #[test]
    fn a_lone_request_runs_at_once_and_gets_its_own_answer() {
        let combiner = Combiner::new(8);
        assert_eq!(combiner.submit(3, |rs: Vec<i32>| Some(rs.iter().map(|r| r * 10).collect())), Some(30));
    }

    #[test]
    fn concurrent_requests_each_get_their_own_answer_in_bounded_batches() {
        let combiner = Arc::new(Combiner::new(64));
        let batches = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let start = Arc::new(Barrier::new(16));
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let (combiner, batches, start) = (Arc::clone(&combiner), Arc::clone(&batches), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    (0..200).all(|k| {
                        let request = i * 1000 + k;
                        let answer = combiner.submit(request, |rs: Vec<i32>| {
                            batches.lock().push(rs.len());
                            Some(rs.iter().map(|r| r + 1).collect())
                        });
                        answer == Some(request + 1)
                    })
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap(), "an answer went to the wrong request");
        }
        let batches = batches.lock();
        assert_eq!(batches.iter().sum::<usize>(), 16 * 200);
        assert!(batches.iter().all(|&n| n <= 64));
    }

    #[test]
    fn a_failed_batch_answers_none_to_each_of_its_requests() {
        let combiner = Combiner::<i32, i32>::new(8);
        assert_eq!(combiner.submit(1, |_| None), None);
        assert_eq!(combiner.submit(2, |_| Some(vec![1, 2])), None, "answers that do not match the requests");
        assert_eq!(combiner.submit(3, Some), Some(3), "the lead is free again");
    }

    #[test]
    fn a_panic_in_a_batch_frees_the_lead() {
        let combiner = Arc::new(Combiner::<i32, i32>::new(8));
        let c = Arc::clone(&combiner);
        let panicked = std::thread::spawn(move || c.submit(1, |_| panic!("storage exploded"))).join();
        assert!(panicked.is_err());
        assert_eq!(combiner.submit(2, Some), Some(2));
    }
}
