use clap::Parser;

fn main() -> std::process::ExitCode {
    cleanroom::cli::Cli::parse().run()
}
