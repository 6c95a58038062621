//! The composition root: parse the command line, set up logging, run, map the outcome to an exit code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = dynwall::cli::parse();
    dynwall::telemetry::init(cli.log_format);
    // One thread is plenty for a daemon that waits on timers and a few sockets, and keeps the
    // resident set small.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dynwall: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(dynwall::app::main(cli)).into()
}
