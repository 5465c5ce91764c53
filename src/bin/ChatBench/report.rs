//! Results: the figures of each run, and the summary that sets the
//! ChatServer's beside the relay's (median over rounds, and their ratio).

use serde_json::{Map, Value, json};

use super::hist::Histogram;

/// Figures of one run against one target, in the order they were set.
/// Keys carry their unit (`_per_s`, `_us`, `_kib`, ...).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    values: Vec<(&'static str, f64)>,
    /// Things the reader must know (errors seen, limits hit).
    pub notes: Vec<String>,
}

impl Metrics {
    pub fn set(&mut self, key: &'static str, value: f64) {
        match self.values.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.values.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
    }

    pub fn keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.values.iter().map(|&(k, _)| k)
    }

    /// `prefix_p50_us` ... `prefix_max_us` from a histogram of nanoseconds.
    pub fn latency(&mut self, keys: [&'static str; 6], hist: &Histogram) {
        let us = |ns: u64| ns as f64 / 1000.0;
        let [p50, p90, p99, p999, max, mean] = keys;
        self.set(p50, us(hist.quantile(0.5)));
        self.set(p90, us(hist.quantile(0.9)));
        self.set(p99, us(hist.quantile(0.99)));
        self.set(p999, us(hist.quantile(0.999)));
        self.set(max, us(hist.max()));
        self.set(mean, hist.mean() / 1000.0);
    }
}

/// One run: which target, which round, what it measured.
pub struct Run {
    pub target: &'static str,
    pub round: usize,
    pub metrics: Metrics,
}

/// The median of `values` (not empty).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

/// Per key, the median over the rounds of each target.
fn medians(runs: &[Run], target: &str) -> Vec<(&'static str, f64)> {
    let mine: Vec<&Run> = runs.iter().filter(|r| r.target == target).collect();
    let Some(first) = mine.first() else { return Vec::new() };
    first
        .metrics
        .keys()
        .filter_map(|key| {
            let mut values: Vec<f64> = mine.iter().filter_map(|r| r.metrics.get(key)).collect();
            (!values.is_empty()).then(|| (key, median(&mut values)))
        })
        .collect()
}

fn fmt(value: f64) -> String {
    if value == value.trunc() || value.abs() >= 100.0 { format!("{value:.0}") } else { format!("{value:.2}") }
}

/// The median over rounds of server / relay for `key`, each from the two
/// runs of one round: they ran back to back, so drift in the machine's load
/// between rounds (other work on a shared machine) cancels out.
fn round_ratio(runs: &[Run], key: &str) -> Option<f64> {
    let value = |target: &str, round: usize| {
        runs.iter().find(|r| r.target == target && r.round == round).and_then(|r| r.metrics.get(key))
    };
    let rounds = runs.iter().map(|r| r.round).max()?;
    let mut ratios: Vec<f64> = (0..=rounds)
        .filter_map(|round| match (value("relay", round), value("server", round)) {
            (Some(r), Some(s)) if r != 0.0 => Some(s / r),
            _ => None,
        })
        .collect();
    (!ratios.is_empty()).then(|| median(&mut ratios))
}

/// Prints the human summary, and the JSON line if asked; returns the JSON.
pub fn summarize(mode: &str, params: &[(&str, String)], runs: &[Run], json_line: bool) -> Value {
    let relay = medians(runs, "relay");
    let server = medians(runs, "server");
    let mut keys: Vec<&'static str> = relay.iter().map(|&(k, _)| k).collect();
    keys.extend(server.iter().map(|&(k, _)| k).filter(|k| !relay.iter().any(|(r, _)| r == k)));
    let find = |list: &[(&'static str, f64)], key: &str| list.iter().find(|(k, _)| *k == key).map(|&(_, v)| v);
    let rounds = runs.iter().map(|r| r.round + 1).max().unwrap_or(0);

    let params_text: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("ChatBench {mode}: {} rounds={rounds}", params_text.join(" "));
    println!("{:<28} {:>14} {:>14} {:>14}", "(median of rounds)", "relay", "server", "server/relay");
    let mut ratio = Map::new();
    for key in &keys {
        let (r, s) = (find(&relay, key), find(&server, key));
        let q = round_ratio(runs, key);
        if let Some(q) = q {
            ratio.insert((*key).into(), json!((q * 1000.0).round() / 1000.0));
        }
        let cell = |v: Option<f64>| v.map_or("-".to_string(), fmt);
        let q = q.map_or("-".to_string(), |q| format!("{q:.2}x"));
        println!("{key:<28} {:>14} {:>14} {:>14}", cell(r), cell(s), q);
    }
    if rounds > 1 {
        for run in runs {
            let first = run.metrics.keys().next().unwrap_or("");
            let value = run.metrics.get(first).map_or("-".into(), fmt);
            println!("  round {} {:<6} {first} = {value}", run.round + 1, run.target);
        }
    }
    let mut notes = Vec::new();
    for run in runs {
        for note in &run.metrics.notes {
            let line = format!("{} (round {}): {note}", run.target, run.round + 1);
            println!("  note: {line}");
            notes.push(line);
        }
    }
    let to_map = |list: &[(&'static str, f64)]| -> Map<String, Value> {
        list.iter().map(|&(k, v)| (k.to_string(), json!(v))).collect()
    };
    let all_runs: Vec<Value> = runs
        .iter()
        .map(|run| {
            let mut m: Map<String, Value> =
                run.metrics.keys().filter_map(|k| Some((k.to_string(), json!(run.metrics.get(k)?)))).collect();
            m.insert("target".into(), json!(run.target));
            m.insert("round".into(), json!(run.round + 1));
            Value::Object(m)
        })
        .collect();
    let params: Map<String, Value> = params.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let value = json!({
        "mode": mode,
        "params": params,
        "rounds": rounds,
        "relay": to_map(&relay),
        "server": to_map(&server),
        "ratio": ratio,
        "runs": all_runs,
        "notes": notes,
    });
    if json_line {
        println!("{value}");
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        let run = |target, round, v: f64| {
            let mut metrics = Metrics::default();
            metrics.set("msgs_per_s", v);
            Run { target, round, metrics }
        };
        let runs = vec![run("relay", 0, 100.0), run("server", 0, 80.0), run("relay", 1, 300.0), run("server", 1, 90.0)];
        let value = summarize("pingpong", &[("pairs", "1".into())], &runs, false);
        assert_eq!(value["relay"]["msgs_per_s"], 200.0);
        assert_eq!(value["server"]["msgs_per_s"], 85.0);
        // Per round 0.8 and 0.3: their median.
        assert_eq!(value["ratio"]["msgs_per_s"], 0.55);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    }
}
