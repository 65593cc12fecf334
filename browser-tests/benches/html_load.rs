//! How a large HTML export behaves in headless Chromium: load time (the
//! browser's navigation timing), DOM size, JavaScript heap, and the time to
//! filter and to sort the table.
//!
//! Run: `cargo build --release --bin statelog && STATELOG_BIN=target/release/statelog
//! cargo bench -p statelog-browser-tests` (100,000 records in one namespace;
//! set `HTML_BENCH_RECORDS` for another count, `HTML_BENCH_RUNS` for more
//! loads than 3).

use std::time::{Duration, Instant};

use serde::Deserialize;
use statelog_browser_tests::{Browser, Cli, bounded, file_url};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Timing {
    response_end: f64,
    dom_interactive: f64,
    dom_content_loaded_event_end: f64,
    load_event_end: f64,
    first_contentful_paint: Option<f64>,
    nodes: u64,
    heap_mib: f64,
}

const TIMING: &str = "
    const n = performance.getEntriesByType('navigation')[0];
    const paint = performance.getEntriesByName('first-contentful-paint')[0];
    return {
        responseEnd: n.responseEnd,
        domInteractive: n.domInteractive,
        domContentLoadedEventEnd: n.domContentLoadedEventEnd,
        loadEventEnd: n.loadEventEnd,
        firstContentfulPaint: paint ? paint.startTime : null,
        nodes: document.getElementsByTagName('*').length,
        heapMib: performance.memory ? performance.memory.usedJSHeapSize / 1048576 : -1,
    };";

/// Types nothing: sets the filter and waits for the count to change, then
/// forces a layout. Includes the script's 80 ms debounce.
const FILTER: &str = "
    const done = arguments[arguments.length - 1];
    const filter = document.getElementById('filter');
    const matches = document.getElementById('matches');
    const started = performance.now();
    new MutationObserver((_, observer) => {
        observer.disconnect();
        document.body.offsetHeight;
        done(performance.now() - started);
    }).observe(matches, { childList: true, characterData: true, subtree: true });
    filter.value = 'failed';
    filter.dispatchEvent(new Event('input'));";

const SORT: &str = "
    const button = [...document.querySelectorAll('main th')]
        .find((h) => h.textContent === 'progress').firstChild;
    const started = performance.now();
    button.click();
    document.body.offsetHeight;
    return performance.now() - started;";

fn main() -> anyhow::Result<()> {
    let records: usize = std::env::var("HTML_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let runs: usize = std::env::var("HTML_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bounded("the benchmark", Duration::from_secs(1800), async {
        let dir = tempfile::Builder::new()
            .prefix("statelog-html-bench-")
            .tempdir()?;
        let cli = Cli::init(&dir.path().join("store"))?;
        cli.load_jobs(dir.path(), records)?;
        let page = dir.path().join("jobs.html");
        let started = Instant::now();
        cli.run(&["export", "--out", page.to_str().unwrap_or("")])?;
        let export = started.elapsed();
        let bytes = std::fs::metadata(&page)?.len();
        println!(
            "{records} records: `statelog export --out jobs.html` {:.2} s ({}), {:.1} MiB",
            export.as_secs_f64(),
            statelog_browser_tests::statelog_bin()?.display(),
            bytes as f64 / (1 << 20) as f64
        );

        let browser = Browser::start().await?;
        let url = file_url(&page)?;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        for run in 1..=runs {
            let cpu = browser.cpu_time();
            let started = Instant::now();
            browser.goto(&url).await?;
            let goto = started.elapsed();
            let cpu = browser.cpu_time().saturating_sub(cpu);
            let t: Timing = browser.eval(TIMING).await?;
            println!(
                "load {run}: response end {:.0} ms, DOM interactive {:.0} ms, \
                 DOMContentLoaded {:.0} ms, load {:.0} ms, first contentful paint {}, \
                 WebDriver navigation {:.0} ms, browser CPU {:.0} ms; {} elements, \
                 JS heap {:.0} MiB",
                t.response_end,
                t.dom_interactive,
                t.dom_content_loaded_event_end,
                t.load_event_end,
                t.first_contentful_paint
                    .map_or("-".to_owned(), |ms| format!("{ms:.0} ms")),
                ms(goto),
                ms(cpu),
                t.nodes,
                t.heap_mib,
            );
            let cpu = browser.cpu_time();
            let filter: f64 =
                serde_json::from_value(browser.client().execute_async(FILTER, Vec::new()).await?)?;
            let cpu = browser.cpu_time().saturating_sub(cpu);
            println!(
                "  filter 'failed' (incl. 80 ms debounce, layout): {filter:.0} ms, \
                 browser CPU {:.0} ms",
                ms(cpu)
            );
            let cpu = browser.cpu_time();
            let sort: f64 = browser.eval(SORT).await?;
            let cpu = browser.cpu_time().saturating_sub(cpu);
            println!(
                "  sort by progress (incl. layout): {sort:.0} ms, browser CPU {:.0} ms",
                ms(cpu)
            );
        }
        browser.screenshot("html_bench_sorted").await?;
        browser.close().await
    }))
}
