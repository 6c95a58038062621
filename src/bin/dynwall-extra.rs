//! `dynwall-extra`: `demo`, `man` and `completions`, kept out of the daemon's resident binary
//! (`dynwall` runs this program for them; see `dynwall::app::companion`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = dynwall::cli::parse();
    dynwall::telemetry::init(cli.log_format);
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
    runtime.block_on(dynwall::app::companion::run(cli)).into()
}
