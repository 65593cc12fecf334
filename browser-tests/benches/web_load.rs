//! The live web view (`statelog serve --http`) on a 100,000-record
//! namespace: the API's first page and other requests over loopback, the
//! page in headless Chromium until its table shows, and the time from a
//! commit by another `statelog` process to its row in the open page.
//!
//! Run: `cargo build --release --bin statelog && STATELOG_BIN=target/release/statelog
//! cargo bench -p statelog-browser-tests --bench web_load` (set
//! `WEB_BENCH_RECORDS` for another count, `WEB_BENCH_RUNS` for more than 20
//! requests of each kind).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, ensure};
use statelog_browser_tests::{Browser, Cli, Served, bounded};

/// One `GET` with `Connection: close`: its status and body length, and the
/// time from connecting to the last byte.
fn get(addr: &str, path: &str) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    ensure!(status.contains(" 200 "), "GET {path}: {status}");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest)?;
    Ok((started.elapsed(), rest.len()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median, 90th percentile and maximum of `runs` requests of `path`.
fn measure(addr: &str, what: &str, path: &str, runs: usize) -> anyhow::Result<()> {
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let (t, n) = get(addr, path)?;
        times.push(t);
        bytes = n;
    }
    times.sort();
    println!(
        "{what}: median {:.1} ms, p90 {:.1} ms, max {:.1} ms ({} runs, {:.1} KiB) GET {path}",
        ms(times[runs / 2]),
        ms(times[runs * 9 / 10]),
        ms(times[runs - 1]),
        runs,
        bytes as f64 / 1024.0
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let records: usize = std::env::var("WEB_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let runs: usize = std::env::var("WEB_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .max(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bounded("the benchmark", Duration::from_secs(1800), async {
        let dir = tempfile::Builder::new()
            .prefix("statelog-web-bench-")
            .tempdir()?;
        let store = dir.path().join("store");
        let cli = Cli::init(&store)?;
        cli.load_jobs(dir.path(), records)?;
        println!(
            "{records} records in one namespace; {}",
            statelog_browser_tests::statelog_bin()?.display()
        );

        let served = Served::start(&store, &[])?;
        let url = served.url().to_owned();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let records_path = "/api/v1/namespaces/jobs/records";
        // The first request warms the page cache and the holder's views.
        get(&addr, records_path)?;
        measure(&addr, "first page (100 records, key order)", records_path, runs)?;
        measure(
            &addr,
            "a page deep in (offset 50,000)",
            &format!("{records_path}?offset=50000"),
            runs,
        )?;
        measure(&addr, "namespaces with counts", "/api/v1/namespaces", runs)?;
        measure(
            &addr,
            "sorted by a field",
            &format!("{records_path}?sort=-value.progress"),
            runs.min(5),
        )?;
        measure(
            &addr,
            "filtered by text",
            &format!("{records_path}?q=failed"),
            runs.min(5),
        )?;
        measure(
            &addr,
            "filtered by a field",
            &format!("{records_path}?where=status%3Dfailed"),
            runs.min(5),
        )?;
        measure(
            &addr,
            "one record",
            "/api/v1/namespaces/jobs/records/task-00050000",
            runs,
        )?;

        let browser = Browser::start().await?;
        for run in 1..=3 {
            browser.goto(&format!("{url}?ns=jobs")).await?;
            browser
                .wait_until(
                    "the table",
                    Duration::from_secs(60),
                    "return performance.getEntriesByName('statelog:shown').length > 0;",
                    "return document.body.innerText.slice(0, 200);",
                )
                .await?;
            let (shown, rows): (f64, u64) = serde_json::from_value(browser.client().execute(
                "return [performance.getEntriesByName('statelog:shown')[0].startTime, \
                 document.querySelectorAll('#records tbody tr').length];",
                Vec::new(),
            ).await?)?;
            ensure!(rows == 100, "the table shows {rows} rows");
            println!("page load {run}: table of the first 100 records shown {shown:.0} ms after navigation started");
        }

        // From a commit to its row: the time before `statelog set` starts
        // to the time the page's observer sees the row (both on the
        // machine's clock).
        browser
            .client()
            .execute(
                "window.seenAt = {};
                 new MutationObserver(() => {
                     for (const r of document.querySelectorAll('#records tbody tr')) {
                         const k = r.dataset.key;
                         if (!(k in window.seenAt)) window.seenAt[k] = performance.timeOrigin + performance.now();
                     }
                 }).observe(document.getElementById('records'), { childList: true, subtree: true });
                 return null;",
                Vec::new(),
            )
            .await?;
        let mut latencies = Vec::new();
        for i in 0..10 {
            let key = format!("a-new-{i:02}");
            let before = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64() * 1000.0;
            cli.run(&["set", "jobs", &key, r#"{"status": "queued", "progress": 0}"#])?;
            let acknowledged = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64() * 1000.0;
            browser
                .wait_until(
                    "the new row",
                    Duration::from_secs(30),
                    &format!("return window.seenAt['{key}'] !== undefined;"),
                    "return Object.keys(window.seenAt).length;",
                )
                .await?;
            let seen: f64 = browser.eval(&format!("return window.seenAt['{key}'];")).await?;
            latencies.push((seen - before, seen - acknowledged));
        }
        latencies.sort_by(|a, b| a.0.total_cmp(&b.0));
        println!(
            "commit to row in the open page (10 commits by `statelog set`): median {:.0} ms, max {:.0} ms \
             from the command's start; median {:.0} ms after it returned",
            latencies[5].0,
            latencies[9].0,
            {
                let mut after: Vec<f64> = latencies.iter().map(|l| l.1).collect();
                after.sort_by(f64::total_cmp);
                after[5]
            }
        );
        browser.screenshot("web_bench").await?;
        browser.close().await?;
        served.stop().context("stopping serve")
    }))
}
