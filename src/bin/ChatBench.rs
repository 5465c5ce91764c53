//! `ChatBench MODE [options]`: load generator for ChatServer, and
//! `ChatBench relay-server PORT`: the raw relay it compares against.
//! Everything lives in `chatserver::bench`.

use std::process::ExitCode;

use chatserver::bench::{self, args};

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let command = match args::parse(&argv) {
        Ok(command) => command,
        Err(why) if why.is_empty() => {
            eprintln!("{}", args::USAGE);
            return ExitCode::from(2);
        }
        Err(why) => {
            eprintln!("ChatBench: {why} (ChatBench --help shows the usage)");
            return ExitCode::from(2);
        }
    };
    match bench::run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("ChatBench: {why}");
            ExitCode::FAILURE
        }
    }
}
