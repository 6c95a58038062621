//! `dynwall-extra`: `demo`, `man` and `completions`, kept out of the daemon's resident binary
//! (`dynwall` runs this program for them; see `dynwall::app::companion`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = dynwall::cli::parse();
    dynwall::telemetry::init(cli.log_format);
    dynwall::app::block_on(dynwall::app::companion::run(cli))
}
