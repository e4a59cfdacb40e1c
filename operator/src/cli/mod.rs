//! The `cleanroom` command line: one module per subcommand.

mod crd;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The cleanroom operator: authorized operation domains for public data on Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "cleanroom", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions as multi-document YAML, or write one file per kind.
    Crd(crd::CrdArgs),
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster config).
    Run(run::RunArgs),
}

impl Cli {
    /// Run the chosen subcommand; errors are printed to stderr.
    pub fn run(self) -> ExitCode {
        let result = match self.command {
            Command::Crd(args) => crd::run(args),
            Command::Run(args) => run::run(args),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cleanroom: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn crd_subcommand_parses_out_dir() {
        let cli = Cli::try_parse_from(["cleanroom", "crd", "--out-dir", "crds"]).expect("parses");
        let Command::Crd(args) = cli.command else {
            panic!("expected the crd subcommand");
        };
        assert_eq!(args.out_dir.as_deref(), Some(std::path::Path::new("crds")));
    }
}
