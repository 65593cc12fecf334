//! The live web view (`statelog serve --http`) in headless Chromium: the
//! page loads and shows the records, a commit made by another `statelog`
//! process appears without a reload, the filter narrows the table, a header
//! sorts it, the pager and the record page work.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::Locator;
use fantoccini::key::Key;
use serde_json::{Value, json};
use statelog_browser_tests::{Browser, Cli, Served, bounded};

/// A bound on each whole test; the waits inside have their own, shorter ones.
const TEST_LIMIT: Duration = Duration::from_secs(300);

/// A bound on each wait for the page. Generous for a loaded machine: how
/// fast a commit shows is printed, and measured by the benchmark.
const WAIT: Duration = Duration::from_secs(30);

const STATUSES: [&str; 4] = ["queued", "running", "done", "failed"];

fn job(i: usize) -> Value {
    json!({
        "status": STATUSES[i % 4],
        "progress": (i * 37) % 101,
        "host": format!("gpu-{}", i % 9),
    })
}

/// Imports `records` into `namespace` through `statelog import --legacy`.
fn import(cli: &Cli, dir: &Path, namespace: &str, records: &BTreeMap<String, Value>) {
    let file = dir.join("import.json");
    std::fs::write(&file, serde_json::to_vec(records).unwrap()).unwrap();
    cli.run(&[
        "import",
        "--legacy",
        "--ns",
        namespace,
        file.to_str().unwrap(),
    ])
    .unwrap();
}

const MATCHES: &str = "return document.getElementById('matches')?.textContent ?? '(no table)';";

/// The cells of the column headed `name`, in page order.
async fn column(browser: &Browser, name: &str) -> anyhow::Result<Vec<String>> {
    browser
        .eval(&format!(
            "const i = [...document.querySelectorAll('#records th')]\
             .findIndex((h) => h.textContent === '{name}');\
             return [...document.querySelectorAll('#records tbody tr')]\
             .map((r) => r.cells[i].textContent);"
        ))
        .await
}

/// Waits until the table shows exactly `keys`.
async fn wait_for_rows(browser: &Browser, what: &str, keys: &[String]) -> anyhow::Result<Duration> {
    // The expected keys as a JavaScript string literal of their JSON.
    let expected = serde_json::to_string(&serde_json::to_string(keys)?)?;
    let script = format!(
        "return JSON.stringify([...document.querySelectorAll('#records tbody tr')]\
         .map((r) => r.dataset.key)) === {expected};"
    );
    browser.wait_until(what, WAIT, &script, MATCHES).await
}

#[tokio::test]
async fn live_records_filter_sort_and_record_page() -> anyhow::Result<()> {
    bounded("the live web view test", TEST_LIMIT, async {
        let dir = tempfile::tempdir()?;
        let store = dir.path().join("store");
        let cli = Cli::init(&store)?;
        let jobs: BTreeMap<String, Value> =
            (0..300).map(|i| (format!("job-{i:04}"), job(i))).collect();
        import(&cli, dir.path(), "jobs", &jobs);
        let builds: BTreeMap<String, Value> =
            (0..5).map(|i| (format!("build-{i}"), job(i))).collect();
        import(&cli, dir.path(), "builds", &builds);
        let served = Served::start(&store, &[])?;

        let browser = Browser::start().await?;
        browser.goto(&format!("{}?ns=jobs", served.url())).await?;
        let first: Vec<String> = jobs.keys().take(100).cloned().collect();
        wait_for_rows(&browser, "the first page", &first).await?;
        browser.screenshot("web_view_loaded").await?;
        assert_eq!(browser.eval::<String>(MATCHES).await?, "300 records; showing 1\u{2013}100");
        let statuses = column(&browser, "status").await?;
        let expected: Vec<String> = jobs.values().take(100).map(|v| v["status"].as_str().unwrap().to_owned()).collect();
        assert_eq!(statuses, expected);
        // Both namespaces are listed.
        let nav: Vec<String> = browser
            .eval("return [...document.querySelectorAll('#namespaces li')].map((l) => l.textContent);")
            .await?;
        assert_eq!(nav, ["builds (5)", "jobs (300)"]);

        // A commit by another process appears without a reload: a new first
        // row, and a changed value in a row already shown.
        browser.eval::<Value>("window.loadedOnce = 'yes'; return null;").await?;
        let committed = Instant::now();
        cli.run(&["set", "jobs", "job-0000", r#"{"status": "failed", "progress": 100, "host": "gpu-x"}"#])?;
        cli.run(&["set", "jobs", "a-new-job", r#"{"status": "queued", "progress": 0, "host": "gpu-1"}"#])?;
        let mut now: Vec<String> = vec!["a-new-job".to_owned()];
        now.extend(jobs.keys().take(99).cloned());
        let shown = wait_for_rows(&browser, "the commits in the open page", &now).await?;
        println!(
            "two commits by `statelog set` appeared {:?} after the first was acknowledged ({:?} after the second)",
            committed.elapsed(),
            shown
        );
        assert_eq!(
            browser.eval::<String>("return window.loadedOnce ?? 'reloaded';").await?,
            "yes"
        );
        assert_eq!(column(&browser, "host").await?[1], "gpu-x");
        assert_eq!(browser.eval::<String>(MATCHES).await?, "301 records; showing 1\u{2013}100");
        browser.screenshot("web_view_live").await?;

        // The filter narrows the table, as typed.
        let filter = browser.find("#filter").await?;
        filter.click().await?;
        filter.send_keys("FAILED").await?;
        let failed: Vec<String> = jobs
            .iter()
            .filter(|(k, v)| v["status"] == "failed" || *k == "job-0000")
            .map(|(k, _)| k.clone())
            .collect();
        wait_for_rows(&browser, "the filter 'FAILED'", &failed).await?;
        assert_eq!(
            browser.eval::<String>(MATCHES).await?,
            format!("{} of 301 records match; showing 1\u{2013}{}", failed.len(), failed.len())
        );
        assert!(column(&browser, "status").await?.iter().all(|s| s == "failed"));
        assert!(browser.eval::<String>("return location.search;").await?.contains("q=FAILED"));
        browser.screenshot("web_view_filtered").await?;

        // A header sorts the filtered table (by number), twice descending.
        let header = "//table[@id='records']//th[button='progress']";
        browser.client().find(Locator::XPath(&format!("{header}/button"))).await?.click().await?;
        let mut by_progress: Vec<(u64, String)> = failed
            .iter()
            .map(|k| {
                let p = if k == "job-0000" { 100 } else { jobs[k]["progress"].as_u64().unwrap() };
                (p, k.clone())
            })
            .collect();
        by_progress.sort();
        let ascending: Vec<String> = by_progress.iter().map(|(_, k)| k.clone()).collect();
        wait_for_rows(&browser, "sorted by progress", &ascending).await?;
        let th = browser.client().find(Locator::XPath(header)).await?;
        assert_eq!(th.attr("aria-sort").await?.as_deref(), Some("ascending"));
        browser.client().find(Locator::XPath(&format!("{header}/button"))).await?.click().await?;
        by_progress.sort_by(|a, b| b.cmp(a));
        let descending: Vec<String> = by_progress.iter().map(|(_, k)| k.clone()).collect();
        wait_for_rows(&browser, "sorted by progress, descending", &descending).await?;

        // Clearing the filter and paging on.
        let filter = browser.find("#filter").await?;
        filter.click().await?;
        filter.send_keys(&format!("{}a", char::from(Key::Control))).await?;
        filter.send_keys(&char::from(Key::Backspace).to_string()).await?;
        browser.goto(&format!("{}?ns=jobs", served.url())).await?;
        wait_for_rows(&browser, "the first page again", &now).await?;
        browser.find("#next").await?.click().await?;
        let second: Vec<String> = jobs.keys().skip(99).take(100).cloned().collect();
        wait_for_rows(&browser, "the second page", &second).await?;
        assert_eq!(browser.eval::<String>(MATCHES).await?, "301 records; showing 101\u{2013}200");

        // A record's page: its value, and it follows commits too.
        browser
            .client()
            .find(Locator::XPath("//table[@id='records']//a[.='job-0150']"))
            .await?
            .click()
            .await?;
        browser
            .wait_until(
                "the record page",
                WAIT,
                "return document.getElementById('value') !== null;",
                "return document.body.innerText;",
            )
            .await?;
        let value: Value = browser.eval("return JSON.parse(document.getElementById('value').textContent);").await?;
        assert_eq!(value, jobs["job-0150"]);
        // The new value replaces the shown one; the history gains a row
        // saying what changed.
        let mut changed = jobs["job-0150"].clone();
        changed["status"] = json!("failed");
        cli.run(&["set", "jobs", "job-0150", &changed.to_string()])?;
        browser
            .wait_until(
                "the record's new value",
                WAIT,
                "return JSON.parse(document.getElementById('value').textContent).status === 'failed';",
                "return document.getElementById('value').textContent;",
            )
            .await?;
        let history: Vec<Vec<String>> = browser
            .eval(
                "return [...document.querySelectorAll('#history tbody tr')]\
                 .map((r) => [...r.cells].map((c) => c.textContent));",
            )
            .await?;
        assert_eq!(history.len(), 2, "{history:?}");
        assert_eq!(history[0][2], "2");
        assert_eq!(
            history[0][3],
            format!("status: {} \u{2192} failed", jobs["job-0150"]["status"].as_str().unwrap())
        );
        assert_eq!(history[1][3], "created");
        browser.screenshot("web_view_record").await?;

        browser.close().await?;
        served.stop()
    })
    .await
}

#[tokio::test]
async fn front_page_lists_namespaces_live() -> anyhow::Result<()> {
    bounded("the front page test", TEST_LIMIT, async {
        let dir = tempfile::tempdir()?;
        let store = dir.path().join("store");
        let cli = Cli::init(&store)?;
        cli.run(&["set", "jobs", "a", "1"])?;
        let served = Served::start(&store, &[])?;
        let browser = Browser::start().await?;
        browser.goto(served.url()).await?;
        let listed = "return [...document.querySelectorAll('main tbody tr')]\
                      .map((r) => [...r.cells].map((c) => c.textContent).join(' ')).join(', ');";
        let shows = |text: &str| listed.replace("');", &format!("') === '{text}';"));
        browser
            .wait_until("the namespaces", WAIT, &shows("jobs 1"), listed)
            .await?;
        cli.run(&["set", "queues", "q", "2"])?;
        browser
            .wait_until("a new namespace", WAIT, &shows("jobs 1, queues 1"), listed)
            .await?;
        assert_eq!(
            browser
                .eval::<String>("return document.getElementById('live').className;")
                .await?,
            "on"
        );
        browser.screenshot("web_view_namespaces").await?;
        browser.close().await?;
        served.stop()
    })
    .await
}

#[tokio::test]
async fn hostile_names_keys_and_values_stay_text() -> anyhow::Result<()> {
    bounded("the hostile-text test", TEST_LIMIT, async {
        let dir = tempfile::tempdir()?;
        let store = dir.path().join("store");
        let cli = Cli::init(&store)?;
        let namespace = "odd <ns> & \"more\"/?#";
        let keys = [
            "</script><script>window.pwned = 1</script>",
            "<img src=x onerror=\"window.pwned = 2\">",
            "a/b?c=d&e#f",
            "&amp; stays as typed",
            "日本語/é/🎉",
        ];
        let records: BTreeMap<String, Value> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let value = json!({
                    "status": format!("<b>{i}</b></td><script>window.pwned = 3</script>"),
                    "note": format!("<style>body {{ display: none }}</style>{k}"),
                });
                (k.to_string(), value)
            })
            .collect();
        import(&cli, dir.path(), namespace, &records);
        let served = Served::start(&store, &[])?;
        let browser = Browser::start().await?;
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("ns", namespace)
            .finish();
        browser.goto(&format!("{}?{query}", served.url())).await?;
        let sorted: Vec<String> = records.keys().cloned().collect();
        wait_for_rows(&browser, "the hostile records", &sorted).await?;
        browser.screenshot("web_view_hostile").await?;
        assert_eq!(
            browser
                .eval::<Value>("return window.pwned ?? null;")
                .await?,
            Value::Null
        );
        assert_eq!(
            browser
                .eval::<usize>("return document.images.length;")
                .await?,
            0
        );
        assert_eq!(
            browser
                .eval::<usize>("return document.scripts.length;")
                .await?,
            1
        );
        let statuses = column(&browser, "status").await?;
        let expected: Vec<String> = records
            .values()
            .map(|v| v["status"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(statuses, expected);
        let nav: Vec<String> = browser
            .eval(
                "return [...document.querySelectorAll('#namespaces a')].map((a) => a.textContent);",
            )
            .await?;
        assert_eq!(nav, [namespace]);

        // Each key's link opens its record.
        for key in keys {
            let link = browser
                .client()
                .find_all(Locator::Css("#records tbody a"))
                .await?;
            let mut found = None;
            for a in link {
                if a.text().await? == key {
                    found = Some(a);
                }
            }
            found.expect("the key's link").click().await?;
            let shown = serde_json::to_string(&serde_json::to_string(key)?)?;
            browser
                .wait_until(
                    "the record page",
                    WAIT,
                    &format!(
                        "const k = document.getElementById('key'); \
                         return k !== null && JSON.stringify(k.textContent) === {shown} \
                         && document.getElementById('value') !== null;"
                    ),
                    "return document.body.innerText;",
                )
                .await?;
            let value: Value = browser
                .eval("return JSON.parse(document.getElementById('value').textContent);")
                .await?;
            assert_eq!(value, records[key]);
            assert_eq!(
                browser
                    .eval::<Value>("return window.pwned ?? null;")
                    .await?,
                Value::Null
            );
            browser.client().back().await?;
            wait_for_rows(&browser, "the table again", &sorted).await?;
        }

        browser.close().await?;
        served.stop()
    })
    .await
}
