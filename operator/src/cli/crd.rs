//! `cleanroom crd`: the CRDs generated from the types in `crate::api`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::crdgen;

#[derive(Args, Debug)]
pub(super) struct CrdArgs {
    /// Write one file per kind (cleanroom.io_<plural>.yaml) into this directory
    /// instead of printing to stdout.
    #[arg(long, value_name = "DIR")]
    pub(super) out_dir: Option<PathBuf>,
}

pub(super) fn run(args: CrdArgs) -> anyhow::Result<()> {
    match args.out_dir {
        Some(dir) => {
            for path in crdgen::write_all(&dir)? {
                eprintln!("wrote {}", path.display());
            }
        }
        None => {
            let yaml = crdgen::render_all()?;
            std::io::stdout()
                .lock()
                .write_all(yaml.as_bytes())
                .context("writing to stdout")?;
        }
    }
    Ok(())
}
