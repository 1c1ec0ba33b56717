//! A private OpenSearch-compatible server (`osmem-server`, in memory) on a
//! free loopback port, for the sink's tests, `rill bench cdc` and the
//! examples, plus the few reads they make back through its search API. It
//! owns the server process and nothing else; the process goes when the
//! value is dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::{Error, Result};

/// A search server of our own (see the module docs).
#[derive(Debug)]
pub struct LocalSearch {
    url: String,
    child: Child,
    client: reqwest::Client,
}

/// The `osmem-server` binary: `RILL_OSMEM`, `OSMEM_SERVER_BIN`, `PATH`, or
/// the test venv that `scripts/test` installs it into.
pub fn binary() -> Option<PathBuf> {
    let explicit = ["RILL_OSMEM", "OSMEM_SERVER_BIN"].iter().filter_map(std::env::var_os).map(PathBuf::from);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path).map(|d| d.join("osmem-server"));
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    let venv =
        cache.map(|c| c.join("rill/venv-py/lib")).and_then(|lib| std::fs::read_dir(lib).ok()).into_iter().flat_map(
            |entries| entries.flatten().map(|e| e.path().join("site-packages/osmem_server/bin/osmem-server")),
        );
    explicit.chain(on_path).chain(venv).find(|p| p.is_file())
}

impl LocalSearch {
    /// Starts the server and waits until it listens.
    pub fn start() -> Result<Self> {
        let bin = binary().ok_or_else(|| {
            Error::Config("osmem-server is not installed (pip install osmem-server; scripts/test does)".into())
        })?;
        let mut child = Command::new(&bin)
            .args(["-addr", "127.0.0.1:0", "-no-stdin-watch", "-parent-pid", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Config(format!("{}: {e}", bin.display())))?;
        // Its first line says where it listens: {"url":"http://127.0.0.1:PORT",…}.
        let mut line = String::new();
        let read = child.stdout.take().map(|out| BufReader::new(out).read_line(&mut line));
        let url = serde_json::from_str::<Value>(&line).ok().and_then(|v| v["url"].as_str().map(str::to_owned));
        let Some(url) = url else {
            let _ = child.kill();
            return Err(Error::Server(format!("osmem-server did not say where it listens ({read:?}): {line}")));
        };
        let client = crate::http_client_builder()
            .build()
            .map_err(|e| Error::Config(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self { url, child, client })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The JSON answer to `GET path`; `None` when the server answers 404.
    async fn get(&self, path: &str) -> Result<Option<Value>> {
        let url = format!("{}/{path}", self.url);
        let response = self.client.get(&url).send().await.map_err(|e| Error::Server(format!("{url}: {e}")))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| Error::Server(format!("{url}: {e}")))?;
        if status.as_u16() == 404 {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(Error::Server(format!("{url}: {status}: {text}")));
        }
        serde_json::from_str(&text).map(Some).map_err(|e| Error::Server(format!("{url}: not JSON ({e}): {text}")))
    }

    /// Creates `index` with these field mappings (`{"field": {"type": "long"}, …}`).
    pub async fn create_index(&self, index: &str, properties: Value) -> Result<()> {
        let url = format!("{}/{index}", self.url);
        let body = serde_json::json!({ "mappings": { "properties": properties } }).to_string();
        let response = self
            .client
            .put(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| Error::Server(format!("{url}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(Error::Server(format!("{url}: {status}: {text}")))
    }

    /// Sends one `_bulk` request of `ndjson` as it is (no refresh); errors unless every action succeeded.
    pub async fn bulk(&self, ndjson: String) -> Result<()> {
        let url = format!("{}/_bulk", self.url);
        let response = self
            .client
            .post(&url)
            .header("content-type", "application/x-ndjson")
            .body(ndjson)
            .send()
            .await
            .map_err(|e| Error::Server(format!("{url}: {e}")))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| Error::Server(format!("{url}: {e}")))?;
        let errors = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["errors"].as_bool());
        if status.is_success() && errors == Some(false) {
            Ok(())
        } else {
            Err(Error::Server(format!("{url}: {status}: {}", text.chars().take(300).collect::<String>())))
        }
    }

    /// Every document of `index` (ids and sources), ordered by id; none if the index does not exist.
    pub async fn documents(&self, index: &str) -> Result<Vec<(String, Value)>> {
        let _ = self.client.post(format!("{}/{index}/_refresh", self.url)).send().await;
        let Some(body) = self.get(&format!("{index}/_search?size=10000")).await? else { return Ok(Vec::new()) };
        let mut docs: Vec<(String, Value)> = body["hits"]["hits"]
            .as_array()
            .map(|hits| {
                hits.iter().map(|h| (h["_id"].as_str().unwrap_or_default().to_owned(), h["_source"].clone())).collect()
            })
            .unwrap_or_default();
        docs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(docs)
    }

    /// Documents in `index` (0 if it does not exist).
    pub async fn count(&self, index: &str) -> Result<u64> {
        let _ = self.client.post(format!("{}/{index}/_refresh", self.url)).send().await;
        Ok(self.get(&format!("{index}/_count")).await?.and_then(|b| b["count"].as_u64()).unwrap_or(0))
    }
}

impl Drop for LocalSearch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
