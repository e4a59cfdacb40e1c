//! The `agent wipe` binary as a Job runs it: stdout, exit code and termination log.

use std::fs;
use std::process::Command;

use tempfile::TempDir;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agent"))
}

#[test]
fn wipe_prints_the_attestation_and_writes_the_termination_log() {
    let volume = TempDir::new().expect("tempdir");
    fs::create_dir_all(volume.path().join("out")).expect("mkdir");
    fs::write(
        volume.path().join("out/result.csv"),
        b"district,count\nA,3\n",
    )
    .expect("write");
    fs::write(volume.path().join("notes.txt"), b"hello").expect("write");
    let logs = TempDir::new().expect("tempdir");
    let log = logs.path().join("termination-log");

    let output = agent()
        .args(["wipe", "--path"])
        .arg(volume.path())
        .arg("--termination-log")
        .arg(&log)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout:?}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(report["files"], 2);
    assert_eq!(report["bytes"], 19 + 5);
    assert_eq!(report["verified"], true);
    assert_eq!(report["digest"].as_str().map(str::len), Some(64));
    assert_eq!(
        fs::read_to_string(&log).expect("log written"),
        stdout.trim()
    );
    assert_eq!(fs::read_dir(volume.path()).expect("root kept").count(), 0);
}

#[test]
fn wipe_failure_exits_non_zero_with_the_error_in_the_termination_log() {
    let logs = TempDir::new().expect("tempdir");
    let log = logs.path().join("termination-log");
    let missing = logs.path().join("no-such-volume");
    let output = agent()
        .args(["wipe", "--path"])
        .arg(&missing)
        .arg("--termination-log")
        .arg(&log)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a directory"), "{stderr}");
    let logged: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&log).expect("log written")).expect("json");
    assert!(
        logged["error"]
            .as_str()
            .is_some_and(|e| e.contains("no-such-volume"))
    );
}

#[test]
fn wipe_over_max_bytes_writes_nothing() {
    let volume = TempDir::new().expect("tempdir");
    fs::write(volume.path().join("big.bin"), vec![1u8; 2048]).expect("write");
    let logs = TempDir::new().expect("tempdir");
    let output = agent()
        .args(["wipe", "--max-bytes", "1024", "--path"])
        .arg(volume.path())
        .arg("--termination-log")
        .arg(logs.path().join("termination-log"))
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert_eq!(
        fs::read(volume.path().join("big.bin")).expect("untouched"),
        vec![1u8; 2048]
    );
}

#[test]
fn a_missing_termination_log_directory_is_ignored() {
    let volume = TempDir::new().expect("tempdir");
    let output = agent()
        .args(["wipe", "--path"])
        .arg(volume.path())
        .args(["--termination-log", "/nonexistent-dir/termination-log"])
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
