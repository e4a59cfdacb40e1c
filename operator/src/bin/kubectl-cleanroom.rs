//! `kubectl cleanroom ...`: the `cleanroom` command as a kubectl plugin
//! (kubectl runs `kubectl-cleanroom` from PATH). Same entry point as `cleanroom`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    cleanroom::cli::Cli::parse().run()
}
