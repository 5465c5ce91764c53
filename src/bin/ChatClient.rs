//! `ChatClient IP PORT`: the menu-driven terminal client (SPEC §4). All
//! the work is in `chatserver::client`.

fn main() {
    // `env::args` would panic on an argument that is not UTF-8.
    let args: Vec<String> = std::env::args_os().skip(1).map(|arg| arg.to_string_lossy().into_owned()).collect();
    chatserver::client::run(&args)
}
