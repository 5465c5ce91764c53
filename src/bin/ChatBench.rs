//! `ChatBench`: load generator for ChatServer (placeholder until built).

fn main() {
    eprintln!("ChatBench: not built yet");
    std::process::exit(2);
}
