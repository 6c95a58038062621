//! The composition root: parse the command line, set up logging, run, map the outcome to an exit code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = dynwall::cli::parse();
    dynwall::telemetry::init(cli.log_format);
    dynwall::app::block_on(dynwall::app::main(cli))
}
