//! `ably-auth`: see the library's documentation, or `ably-auth help`.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let now_ms = shared::clock::Clock::now_ms(&shared::clock::SystemClock);
    let cx = ably_auth::Context {
        env: &shared::env::ProcessEnv,
        now_ms,
    };
    let out = ably_auth::run(&args, &cx);
    let _ = std::io::stdout().write_all(out.stdout.as_bytes());
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    std::process::exit(out.code);
}
