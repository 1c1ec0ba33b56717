//! Helpers for the tests that run the `rill` binary.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `rill` binary under test, without the caller's log settings.
pub fn rill() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rill"));
    c.env_remove("RILL_LOG");
    c
}

/// Starts `rill standalone --json` on a free port; returns it and its state line.
pub fn start(data_dir: &Path, extra: &[&str]) -> (Child, serde_json::Value) {
    let mut child = rill()
        .args(["standalone", "--json", "--grpc-addr", "127.0.0.1:0", "--namesrv-addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "standalone printed nothing");
    (child, serde_json::from_str(&line).unwrap())
}

/// Sends a signal (`-TERM`, `-INT`, `-KILL`) to a child.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}

/// Stops a broker with SIGTERM and checks that it exits cleanly.
pub fn stop(child: Child) {
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "broker did not stop cleanly: {}", String::from_utf8_lossy(&out.stderr));
}

/// Starts `rill <args> --json`; returns the child and its state line.
pub fn spawn(args: &[&str]) -> (Child, serde_json::Value) {
    let mut child = rill().args(args).arg("--json").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "rill {args:?} printed nothing");
    (child, serde_json::from_str(&line).unwrap())
}

pub fn broker_config(dir: &Path, name: &str, namesrv: &str, extra: &str) -> std::path::PathBuf {
    let file = dir.join(format!("{name}.toml"));
    let text = format!(
        "[store]\ndata_dir = \"{}\"\nsegment_size = 8388608\n\n[broker]\ngrpc_addr = \"127.0.0.1:0\"\n\
         broker_name = \"{name}\"\n{extra}\n[namesrv]\naddr = \"{namesrv}\"\n",
        dir.join(name).display()
    );
    std::fs::write(&file, text).unwrap();
    file
}

pub fn admin(addr: &str, args: &[&str]) -> serde_json::Value {
    let out = rill().args(["admin", "--json", "--server", addr]).args(args).output().unwrap();
    assert!(out.status.success(), "rill admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits (bounded) until `rill admin cluster list` on `addr` shows `n` brokers.
pub fn wait_for_brokers(addr: &str, n: usize) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = admin(addr, &["cluster", "list"]);
        if list.as_array().unwrap().len() == n {
            return list;
        }
        assert!(Instant::now() < deadline, "cluster never showed {n} brokers: {list}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the servers a test starts can be: MariaDB (`mariadbd`) and,
/// when `search`, `osmem-server`. Without them the test is to say so
/// loudly and pass — except in CI (`CI=true`), where this panics.
pub fn servers_available(search: bool) -> bool {
    let mariadb = rill_mysql_cdc::mariadb_available();
    let osmem = !search || rill_elasticsearch::server::binary().is_some();
    if mariadb && osmem {
        return true;
    }
    let missing = if mariadb {
        "osmem-server"
    } else if osmem {
        "mariadbd"
    } else {
        "mariadbd and osmem-server"
    };
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and no {missing} on this machine");
    eprintln!("\n*** SKIPPED: {missing} is not installed (scripts/test installs it) ***\n");
    false
}
