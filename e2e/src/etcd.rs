//! The local etcd's own metrics, for the benchmarks: how many bytes the
//! control plane really wrote (its write-ahead log) and how large its
//! database is. Plain HTTP on 127.0.0.1 (`e2e/.cluster/cluster.env` names
//! the port), no client crate needed.

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::cluster_dir;

/// What etcd says about its writes at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Written {
    /// `etcd_disk_wal_write_bytes_total`: every byte appended to the
    /// write-ahead log (each revision's value, whole), the bytes written.
    pub wal_bytes: f64,
    /// `etcd_mvcc_db_total_size_in_bytes`: the database file, old revisions
    /// included until the API server compacts them.
    pub db_bytes: f64,
    /// `etcd_mvcc_put_total`: puts (creates and updates).
    pub puts: f64,
}

impl Written {
    /// What was written between `self` (before) and `after`.
    pub fn delta(&self, after: &Written) -> Written {
        Written {
            wal_bytes: after.wal_bytes - self.wal_bytes,
            db_bytes: after.db_bytes - self.db_bytes,
            puts: after.puts - self.puts,
        }
    }
}

fn port() -> Result<u16> {
    let env = std::fs::read_to_string(cluster_dir().join("cluster.env"))
        .context("reading the cluster's cluster.env (is the cluster up?)")?;
    env.lines()
        .find_map(|l| l.strip_prefix("ETCD_PORT="))
        .context("no ETCD_PORT in cluster.env")?
        .trim()
        .parse()
        .context("ETCD_PORT")
}

/// The value of the (unlabelled) metric `name` in a Prometheus text page.
pub fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Reads etcd's metrics now.
pub async fn written() -> Result<Written> {
    let mut stream = TcpStream::connect(("127.0.0.1", port()?)).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut page = String::new();
    stream.read_to_string(&mut page).await?;
    if !page.starts_with("HTTP/1.0 200") && !page.starts_with("HTTP/1.1 200") {
        bail!("etcd /metrics: {}", page.lines().next().unwrap_or_default());
    }
    let get = |name| metric(&page, name).with_context(|| format!("etcd has no metric {name}"));
    Ok(Written {
        wal_bytes: get("etcd_disk_wal_write_bytes_total")?,
        db_bytes: get("etcd_mvcc_db_total_size_in_bytes")?,
        puts: get("etcd_mvcc_put_total")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_is_read_by_its_exact_name() {
        let page = "# HELP x\netcd_disk_wal_write_bytes_total 1.5e+06\netcd_disk_wal_write_bytes_total_x 3\n";
        assert_eq!(metric(page, "etcd_disk_wal_write_bytes_total"), Some(1.5e6));
        assert_eq!(metric(page, "etcd_mvcc_put_total"), None);
    }
}
