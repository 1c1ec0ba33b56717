//! Lookup joins as a user runs them: orders sent to a topic with `rill
//! produce`, enriched by `rill run` with customers read by key from a MySQL
//! table (the machine's MariaDB) as it is when each order arrives — a
//! customer renamed between two runs is read anew; two lookups in a row
//! (customers, then products) enrich one stream. `--explain` shows the
//! lookups; mistakes are reported at their place in the job file. Without
//! a server the tests say so loudly and pass, except in CI (`CI=true`).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{rill, start, stop};
use mysql_async::prelude::Queryable;
use rill_streams::JsonFileSink;

const URL: &str = "mysql://root@127.0.0.1:3306/test";

fn server_up() -> bool {
    if std::net::TcpStream::connect("127.0.0.1:3306").is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and no MariaDB on 127.0.0.1:3306");
        eprintln!("\n*** SKIPPED: no MariaDB on 127.0.0.1:3306 ***\n");
        return false;
    }
    true
}

/// Runs `statements` against the test database.
fn sql(statements: &[String]) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = mysql_async::Pool::new(URL);
        let mut conn = pool.get_conn().await.unwrap();
        for s in statements {
            conn.query_drop(s).await.unwrap();
        }
        drop(conn);
        pool.disconnect().await.unwrap();
    });
}

fn produce(addr: &str, file: &Path, orders: &[serde_json::Value]) {
    let lines: Vec<String> = orders.iter().map(ToString::to_string).collect();
    std::fs::write(file, lines.join("\n") + "\n").unwrap();
    let out = rill().args(["produce", "--server", addr, "--topic", "lookup-orders"]).arg(file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The committed rows of a filesystem sink, sorted.
fn rows(dir: &Path) -> Vec<serde_json::Value> {
    let mut rows: Vec<serde_json::Value> = Vec::new();
    for file in JsonFileSink::committed(dir).unwrap() {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            rows.push(serde_json::from_str(line).unwrap());
        }
    }
    rows.sort_by_key(|r| r["id"].as_i64());
    rows
}

#[test]
fn orders_are_enriched_from_a_mysql_table_as_it_is_when_they_arrive() {
    if !server_up() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let customers = format!("rill_customers_{}", std::process::id());
    let products = format!("rill_products_{}", std::process::id());
    sql(&[
        format!("DROP TABLE IF EXISTS `{products}`"),
        format!("CREATE TABLE `{products}` (sku VARCHAR(16) PRIMARY KEY, price DOUBLE)"),
        format!("INSERT INTO `{products}` VALUES ('a', 2.5), ('b', 4.0)"),
        format!("DROP TABLE IF EXISTS `{customers}`"),
        format!(
            "CREATE TABLE `{customers}` (id BIGINT PRIMARY KEY, name VARCHAR(64), tier VARCHAR(16), active BOOLEAN)"
        ),
        format!(
            "INSERT INTO `{customers}` VALUES (1, 'ann', 'gold', TRUE), (2, 'bob', 'silver', TRUE), (3, 'cy', 'gold', FALSE)"
        ),
    ]);
    let (broker, state) = start(&dir.path().join("data"), &[]);
    let addr = state["grpc_addr"].as_str().unwrap().to_owned();
    let order = |id: i64, customer: Option<i64>, amount: f64| {
        let sku = ["a", "b", "a", "a", "x", "b", "b", "a"][(id - 1) as usize];
        serde_json::json!({"id": id, "customer_id": customer, "amount": amount, "sku": sku})
    };
    produce(
        &addr,
        &dir.path().join("orders-1.jsonl"),
        &[
            order(1, Some(1), 10.0),
            order(2, Some(2), 0.5),
            order(3, Some(3), 7.0),
            order(4, Some(9), 3.0),
            order(5, Some(1), 2.5),
            order(6, None, 4.0),
        ],
    );
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jobs/lookup_join.sql");
    let out_dir = dir.path().join("out");
    let run = |extra: &[&str]| {
        rill()
            .arg("run")
            .arg(&job)
            .args(extra)
            .env("RILL_SERVER", &addr)
            .env("MYSQL_URL", URL)
            .env("CUSTOMERS", &customers)
            .env("PRODUCTS", &products)
            .env("OUT", &out_dir)
            .env("CHECKPOINTS", dir.path().join("checkpoints"))
            .output()
            .unwrap()
    };
    let explain = run(&["--explain"]);
    assert!(explain.status.success(), "{}", String::from_utf8_lossy(&explain.stderr));
    let explain = String::from_utf8_lossy(&explain.stdout);
    for want in [
        format!(
            "  lookup join with customers (mysql table `{customers}` at {URL}) as of proc_time (processing time) \
             on customer_id = customers.id, table rows where active, cache of 1000 keys for 600000 ms"
        ),
        format!("  left lookup join with customers (mysql table `{customers}` at {URL})"),
    ] {
        assert!(explain.contains(&want), "EXPLAIN lacks {want:?}:\n{explain}");
    }

    let out = run(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let enriched = |name: &str, tier: &str, id: i64, amount: f64| serde_json::json!({"id": id, "name": name, "tier": tier, "amount": amount});
    // 2: amount not over 1.0; 3: an inactive customer; 4: no such customer; 6: no customer at all.
    assert_eq!(
        rows(&out_dir.join("enriched")),
        vec![enriched("ann", "gold", 1, 10.0), enriched("ann", "gold", 5, 2.5)]
    );
    let every = |id: i64, customer: Option<i64>, name: Option<&str>| {
        let mut row = serde_json::json!({"id": id});
        if let Some(c) = customer {
            row["customer_id"] = c.into();
        }
        if let Some(n) = name {
            row["name"] = n.into();
        }
        row
    };
    let all = vec![
        every(1, Some(1), Some("ann")),
        every(2, Some(2), Some("bob")),
        every(3, Some(3), Some("cy")),
        every(4, Some(9), None),
        every(5, Some(1), Some("ann")),
        every(6, None, None),
    ];
    assert_eq!(rows(&out_dir.join("all_orders")), all);
    let priced = |id: i64, name: Option<&str>, price: f64| {
        let mut row = serde_json::json!({"id": id, "price": price});
        if let Some(n) = name {
            row["name"] = n.into();
        }
        row
    };
    // 5: no such product.
    let mut all_priced = vec![
        priced(1, Some("ann"), 2.5),
        priced(2, Some("bob"), 4.0),
        priced(3, Some("cy"), 2.5),
        priced(4, None, 2.5),
        priced(6, None, 4.0),
    ];
    assert_eq!(rows(&out_dir.join("priced")), all_priced);

    // The table changes; orders arriving after that see the change.
    sql(&[
        format!("UPDATE `{customers}` SET name = 'anne' WHERE id = 1"),
        format!("INSERT INTO `{customers}` VALUES (9, 'dan', 'bronze', TRUE)"),
    ]);
    produce(&addr, &dir.path().join("orders-2.jsonl"), &[order(7, Some(1), 5.0), order(8, Some(9), 6.0)]);
    let out = run(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        rows(&out_dir.join("enriched")),
        vec![
            enriched("ann", "gold", 1, 10.0),
            enriched("ann", "gold", 5, 2.5),
            enriched("anne", "gold", 7, 5.0),
            enriched("dan", "bronze", 8, 6.0)
        ],
        "the second run reads only the new orders, with the table as it is now"
    );
    let mut all = all;
    all.extend([every(7, Some(1), Some("anne")), every(8, Some(9), Some("dan"))]);
    assert_eq!(rows(&out_dir.join("all_orders")), all);

    all_priced.extend([priced(7, Some("anne"), 4.0), priced(8, Some("dan"), 2.5)]);
    assert_eq!(rows(&out_dir.join("priced")), all_priced);

    sql(&[format!("DROP TABLE `{customers}`"), format!("DROP TABLE `{products}`")]);
    stop(broker);
}

/// `line:column` (1-based) where `needle` first appears in `text`.
fn place(text: &str, needle: &str) -> String {
    let at = text.find(needle).unwrap();
    let line = text[..at].matches('\n').count() + 1;
    let column = at - text[..at].rfind('\n').map_or(0, |n| n + 1) + 1;
    format!("{line}:{column}")
}

#[test]
fn lookup_join_mistakes_name_their_place() {
    if !server_up() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let orders = "CREATE TABLE orders (id BIGINT, customer_id BIGINT, ts TIMESTAMP(3), proc_time AS PROCTIME(),\n  \
                  WATERMARK FOR ts AS ts) WITH ('connector' = 'rocketmq', 'endpoints' = '127.0.0.1:1',\n  \
                  'topic' = 'orders', 'consumer-group' = 'g');\n";
    let customers = |table: &str, extra: &str| {
        format!(
            "CREATE TABLE customers (id BIGINT, name STRING) WITH ('connector' = 'mysql',\n  \
             'url' = '{URL}', 'table-name' = '{table}'{extra});\n"
        )
    };
    let out = "CREATE TABLE out (id BIGINT, name STRING) WITH ('connector' = 'print');\n";
    let join = |time: &str| {
        format!(
            "INSERT INTO out SELECT o.id, c.name FROM orders AS o\n  \
             JOIN customers FOR SYSTEM_TIME AS OF o.{time} AS c ON o.customer_id = c.id;\n"
        )
    };
    let missing = format!("rill_missing_{}", std::process::id());
    let cases: Vec<(String, &str, String)> = vec![
        (
            format!("{orders}{}{out}{}", customers("t", ""), join("ts")),
            "FOR SYSTEM_TIME",
            "FOR SYSTEM_TIME AS OF takes the stream's PROCTIME() column".into(),
        ),
        (
            format!("{orders}{}{out}INSERT INTO out SELECT id, name FROM customers;\n", customers("t", "")),
            "'connector' = 'mysql'",
            "a mysql table is read by key in a lookup join".into(),
        ),
        (
            format!("{orders}{}{out}{}", customers(&missing, ""), join("proc_time")),
            "CREATE TABLE customers",
            format!("mysql table `{missing}` at {URL}: mysql: … Table 'test.{missing}' doesn't exist"),
        ),
        (
            format!("{orders}{}{out}{}", customers("t", ",\n  'lookup.cache' = 'PARTIAL'"), join("proc_time")),
            "'lookup.cache'",
            "'lookup.cache' = 'PARTIAL' needs 'lookup.partial-cache.max-rows'".into(),
        ),
    ];
    for (i, (text, at, message)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("mistake-{i}.sql"));
        std::fs::write(&file, text).unwrap();
        let out = rill().args(["run", "--explain"]).arg(&file).output().unwrap();
        assert!(!out.status.success(), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want = format!("{}:{}: ", file.display(), place(text, at));
        assert!(stderr.contains(&want), "case {i}: expected an error at {want:?}, got: {stderr}");
        for part in message.split(" … ") {
            assert!(stderr.contains(part), "case {i}: expected {part:?} in: {stderr}");
        }
    }
}
