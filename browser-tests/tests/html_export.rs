//! The HTML export (`statelog export --format html`) opened in headless
//! Chromium: every record is a row, the filter narrows the table, a header
//! sorts it, and hostile keys and values stay text.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use fantoccini::Locator;
use fantoccini::key::Key;
use serde_json::{Value, json};
use statelog_browser_tests::{Browser, Cli, Options, bounded, file_url};

/// A bound on each whole test; the waits inside have their own, shorter ones.
const TEST_LIMIT: Duration = Duration::from_secs(300);

/// A bound on each wait for the page to react.
const WAIT: Duration = Duration::from_secs(30);

const STATUSES: [&str; 4] = ["queued", "running", "done", "failed"];

/// The value of record `i` of a generated namespace.
fn job(i: usize) -> Value {
    json!({
        "status": STATUSES[i % 4],
        // Numbers whose text order differs from their numeric order.
        "progress": (i * 37) % 101,
        "host": format!("gpu-{}", i % 9),
        "attempts": i % 3,
    })
}

/// Imports `records` into `namespace` through `statelog import --legacy`.
fn import(cli: &Cli, dir: &Path, namespace: &str, records: &BTreeMap<String, Value>) {
    let file = dir.join(format!("{namespace}.json"));
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

const MATCHES: &str = "return document.getElementById('matches').textContent;";

/// Replaces the filter's text by typing, as a person would.
async fn type_filter(browser: &Browser, text: &str) -> anyhow::Result<()> {
    let filter = browser.find("#filter").await?;
    filter.click().await?;
    let select_all = format!("{}a", char::from(Key::Control));
    filter.send_keys(&select_all).await?;
    filter
        .send_keys(&char::from(Key::Backspace).to_string())
        .await?;
    if !text.is_empty() {
        filter.send_keys(text).await?;
    }
    Ok(())
}

/// The cells of the column headed `name` of the table in `section`, in page
/// order.
async fn column(browser: &Browser, section: &str, name: &str) -> anyhow::Result<Vec<String>> {
    browser
        .eval(&format!(
            "const i = [...document.querySelectorAll('{section} th')]\
             .findIndex((h) => h.textContent === '{name}');\
             return [...document.querySelectorAll('{section} tbody tr')]\
             .map((r) => r.cells[i].textContent);"
        ))
        .await
}

/// Clicks the header `name` of the table of namespace section `id`, as a
/// person would, and returns its `aria-sort`.
async fn sort_by(browser: &Browser, id: &str, name: &str) -> anyhow::Result<String> {
    let header = format!("//section[@id='{id}']//th[.='{name}']");
    browser
        .client()
        .find(Locator::XPath(&format!("{header}/button")))
        .await?
        .click()
        .await?;
    let th = browser.client().find(Locator::XPath(&header)).await?;
    Ok(th.attr("aria-sort").await?.unwrap_or_default())
}

#[tokio::test]
async fn ten_thousand_records_show_filter_and_sort() -> anyhow::Result<()> {
    bounded("the 10,000-record test", TEST_LIMIT, async {
        let dir = tempfile::tempdir()?;
        let cli = Cli::init(&dir.path().join("store"))?;
        let jobs: BTreeMap<String, Value> = (0..9_000)
            .map(|i| (format!("job-{i:05}"), job(i)))
            .collect();
        let builds: BTreeMap<String, Value> = (0..1_000)
            .map(|i| (format!("build-{i:04}"), job(i + 1)))
            .collect();
        import(&cli, dir.path(), "jobs", &jobs);
        import(&cli, dir.path(), "builds", &builds);
        let page = dir.path().join("dashboard.html");
        cli.run(&["export", "--out", page.to_str().unwrap()])?;
        let job_keys: Vec<String> = jobs.keys().cloned().collect();
        let build_keys: Vec<String> = builds.keys().cloned().collect();

        let browser = Browser::start().await?;
        browser.goto(&file_url(&page)?).await?;
        browser.screenshot("html_export_loaded").await?;

        // Every record is a row, in key order; each table shows its first
        // page of rows.
        let rows: usize = browser
            .eval("return document.querySelectorAll('main tbody tr').length;")
            .await?;
        assert_eq!(rows, 10_000);
        assert_eq!(column(&browser, "#ns-jobs", "key").await?, job_keys);
        assert_eq!(column(&browser, "#ns-builds", "key").await?, build_keys);
        let headers: Vec<String> = browser
            .eval("return [...document.querySelectorAll('#ns-jobs th')].map((h) => h.textContent);")
            .await?;
        assert_eq!(
            headers,
            // The values' scalar fields in stored order (serde_json's
            // objects keep names sorted).
            [
                "key", "version", "updated", "attempts", "host", "progress", "status", "value"
            ]
        );
        assert_eq!(visible_keys(&browser, "#ns-jobs").await?, job_keys[..PAGE]);
        assert_eq!(visible_keys(&browser, "#ns-builds").await?, build_keys);
        assert_eq!(
            count(&browser, "#ns-jobs").await?,
            "9000 records; showing the first 1000."
        );
        assert_eq!(count(&browser, "#ns-builds").await?, "1000 records.");

        // A click on "progress" sorts by number, ties in key order; a second
        // click reverses; "key" restores the order. The first page shows the
        // first rows of the new order.
        let progress_of = |key: &String| jobs[key]["progress"].as_u64().unwrap();
        let mut ascending = job_keys.clone();
        ascending.sort_by_key(progress_of);
        assert_eq!(sort_by(&browser, "ns-jobs", "progress").await?, "ascending");
        assert_eq!(visible_keys(&browser, "#ns-jobs").await?, ascending[..PAGE]);
        let cells = visible_cells(&browser, "#ns-jobs", "progress").await?;
        let numbers: Vec<u64> = cells.iter().map(|c| c.parse().unwrap()).collect();
        assert!(numbers.windows(2).all(|w| w[0] <= w[1]) && numbers[0] == 0);
        browser.screenshot("html_export_sorted").await?;

        assert_eq!(
            sort_by(&browser, "ns-jobs", "progress").await?,
            "descending"
        );
        let mut descending = job_keys.clone();
        descending.sort_by_key(|k| std::cmp::Reverse(progress_of(k)));
        assert_eq!(
            visible_keys(&browser, "#ns-jobs").await?,
            descending[..PAGE]
        );
        let cells = visible_cells(&browser, "#ns-jobs", "progress").await?;
        assert_eq!(cells[0], "100");
        assert_eq!(visible_keys(&browser, "#ns-builds").await?, build_keys);
        assert_eq!(sort_by(&browser, "ns-jobs", "key").await?, "ascending");
        assert_eq!(visible_keys(&browser, "#ns-jobs").await?, job_keys[..PAGE]);

        // Two words (any case) narrow both tables to what has both.
        let keys_where = |records: &BTreeMap<String, Value>, f: &dyn Fn(&Value) -> bool| {
            records
                .iter()
                .filter(|(_, v)| f(v))
                .map(|(k, _)| k.clone())
                .collect::<Vec<_>>()
        };
        let on_gpu7 = |v: &Value| v["status"] == "failed" && v["host"] == "gpu-7";
        let jobs_gpu7 = keys_where(&jobs, &on_gpu7);
        let builds_gpu7 = keys_where(&builds, &on_gpu7);
        let expected = jobs_gpu7.len() + builds_gpu7.len();
        assert!(expected > 0 && jobs_gpu7.len() < PAGE);
        type_filter(&browser, "FAILED gpu-7").await?;
        wait_for_visible(&browser, "the filter 'FAILED gpu-7'", expected).await?;
        assert_eq!(visible_keys(&browser, "#ns-jobs").await?, jobs_gpu7);
        assert_eq!(visible_keys(&browser, "#ns-builds").await?, builds_gpu7);
        assert_eq!(
            browser.eval::<String>(MATCHES).await?,
            format!("{expected} of 10000 records match")
        );
        assert_eq!(
            count(&browser, "#ns-jobs").await?,
            format!("{} of 9000 records match.", jobs_gpu7.len())
        );
        browser.screenshot("html_export_filtered").await?;

        // One word: more matches than a page shows, until "Show all".
        let failed = |v: &Value| v["status"] == "failed";
        let jobs_failed = keys_where(&jobs, &failed);
        let builds_failed = keys_where(&builds, &failed);
        assert!(jobs_failed.len() > PAGE);
        type_filter(&browser, "failed").await?;
        wait_for_visible(&browser, "the filter 'failed'", PAGE + builds_failed.len()).await?;
        assert_eq!(
            visible_keys(&browser, "#ns-jobs").await?,
            jobs_failed[..PAGE]
        );
        assert_eq!(visible_keys(&browser, "#ns-builds").await?, builds_failed);
        assert_eq!(
            count(&browser, "#ns-jobs").await?,
            format!(
                "{} of 9000 records match; showing the first 1000.",
                jobs_failed.len()
            )
        );
        let show_all = "//section[@id='ns-jobs']//p[@class='pager']/button[.='Show all']";
        browser
            .client()
            .find(Locator::XPath(show_all))
            .await?
            .click()
            .await?;
        assert_eq!(visible_keys(&browser, "#ns-jobs").await?, jobs_failed);

        // An empty filter shows every record again.
        type_filter(&browser, "").await?;
        wait_for_visible(&browser, "an empty filter", 10_000).await?;
        assert_eq!(visible_keys(&browser, "#ns-jobs").await?, job_keys);
        assert_eq!(browser.eval::<String>(MATCHES).await?, "");
        assert_eq!(count(&browser, "#ns-jobs").await?, "9000 records.");
        browser.screenshot("html_export_all").await?;

        browser.close().await
    })
    .await
}

/// Rows each table shows before "Show more" (the page script's `PAGE`).
const PAGE: usize = 1000;

/// The keys of the rows of `section` that are rendered, in page order.
async fn visible_keys(browser: &Browser, section: &str) -> anyhow::Result<Vec<String>> {
    visible_cells(browser, section, "key").await
}

/// The cells of the column headed `name` of the rendered rows of `section`,
/// in page order.
async fn visible_cells(
    browser: &Browser,
    section: &str,
    name: &str,
) -> anyhow::Result<Vec<String>> {
    browser
        .eval(&format!(
            "const i = [...document.querySelectorAll('{section} th')]\
             .findIndex((h) => h.textContent === '{name}');\
             return [...document.querySelectorAll('{section} tbody tr')]\
             .filter((r) => r.getClientRects().length > 0).map((r) => r.cells[i].textContent);"
        ))
        .await
}

/// The line under a namespace's heading.
async fn count(browser: &Browser, section: &str) -> anyhow::Result<String> {
    browser
        .eval(&format!(
            "return document.querySelector('{section} .count').textContent;"
        ))
        .await
}

/// Waits (after typing in the filter) until `n` rows of the page are rendered.
async fn wait_for_visible(browser: &Browser, what: &str, n: usize) -> anyhow::Result<()> {
    let rows = "[...document.querySelectorAll('main tbody tr')]\
                .filter((r) => r.getClientRects().length > 0).length";
    let report =
        format!("return {rows} + ' rows; ' + document.getElementById('matches').textContent;");
    browser
        .wait_until(what, WAIT, &format!("return {rows} === {n};"), &report)
        .await
        .map(drop)
}

#[tokio::test]
async fn hostile_keys_and_values_stay_text() -> anyhow::Result<()> {
    bounded("the hostile-text test", TEST_LIMIT, async {
        let dir = tempfile::tempdir()?;
        let cli = Cli::init(&dir.path().join("store"))?;
        let keys = [
            "</script><script>window.pwned = 1</script>",
            "<img src=x onerror=\"window.pwned = 2\">",
            "<!-- not a comment",
            "&amp; &lt;b&gt; stays as typed",
            "\"double\" and 'single' quotes",
            "line\u{2028}separator\u{2029}paragraph",
            " spaces at both ends ",
            "]]></pre></details></td></tr></tbody></table></section>",
            "日本語/é/🎉",
            "{{template}} ${x} `tick`",
        ];
        let records: BTreeMap<String, Value> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let value = json!({
                    "status": format!("<b>{i}</b> & </pre></script>"),
                    "note": format!("\u{2028}<style>body {{ display: none }}</style>{k}"),
                    "nested": { "html": "<script>window.pwned = 3</script>", "i": i },
                });
                (k.to_string(), value)
            })
            .collect();
        import(&cli, dir.path(), "odd <ns> & \"more\"", &records);
        let page = dir.path().join("odd.html");
        cli.run(&[
            "export",
            "--format",
            "html",
            "--out",
            page.to_str().unwrap(),
        ])?;

        let browser = Browser::start().await?;
        browser.goto(&file_url(&page)?).await?;
        browser.screenshot("html_export_hostile").await?;

        // Nothing ran but the page's own script, and nothing was hidden.
        // The page's own two: the head's one line and the table script.
        assert_eq!(
            browser
                .eval::<usize>("return document.scripts.length;")
                .await?,
            2
        );
        assert_eq!(
            browser
                .eval::<Value>("return window.pwned ?? null;")
                .await?,
            Value::Null
        );
        assert_eq!(
            browser
                .eval::<usize>("return document.styleSheets.length;")
                .await?,
            1
        );
        assert_eq!(
            browser
                .eval::<usize>("return document.images.length;")
                .await?,
            0
        );
        let section = "section";
        assert_eq!(
            browser
                .eval::<String>("return document.querySelector('section h2').textContent;")
                .await?,
            "odd <ns> & \"more\""
        );
        // Keys, cells and values read back exactly as they were written.
        let shown = column(&browser, section, "key").await?;
        assert_eq!(shown, records.keys().cloned().collect::<Vec<_>>());
        let statuses = column(&browser, section, "status").await?;
        let expected: Vec<String> = records
            .values()
            .map(|v| v["status"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(statuses, expected);
        let values: Vec<Value> = browser
            .eval(
                "return [...document.querySelectorAll('section tbody tr')]\
                 .map((r) => JSON.parse(r.querySelector('pre').textContent));",
            )
            .await?;
        assert_eq!(values, records.values().cloned().collect::<Vec<_>>());
        assert_eq!(visible_keys(&browser, "main").await?, shown);

        // A value opens on a click on its cell, and closes on another; the
        // others stay closed.
        let value_shown = "return [...document.querySelectorAll('section pre')]\
                           .map((p) => p.getClientRects().length > 0);";
        assert_eq!(
            browser.eval::<Vec<bool>>(value_shown).await?,
            vec![false; keys.len()]
        );
        let cell = browser.find("section tbody tr td.v").await?;
        cell.click().await?;
        let mut expected = vec![false; keys.len()];
        expected[0] = true;
        assert_eq!(browser.eval::<Vec<bool>>(value_shown).await?, expected);
        browser.screenshot("html_export_value").await?;
        cell.click().await?;
        assert_eq!(
            browser.eval::<Vec<bool>>(value_shown).await?,
            vec![false; keys.len()]
        );

        // Filtering on such text works like any other.
        type_filter(&browser, "</script><script>").await?;
        wait_for_visible(&browser, "the filter '</script><script>'", 1).await?;
        assert_eq!(visible_keys(&browser, "main").await?, [keys[0]]);

        browser.close().await
    })
    .await
}

#[tokio::test]
async fn without_javascript_every_row_is_shown() -> anyhow::Result<()> {
    bounded("the no-script test", TEST_LIMIT, async {
        let dir = tempfile::tempdir()?;
        let cli = Cli::init(&dir.path().join("store"))?;
        let jobs: BTreeMap<String, Value> = (0..1_500)
            .map(|i| (format!("job-{i:05}"), job(i)))
            .collect();
        import(&cli, dir.path(), "jobs", &jobs);
        let page = dir.path().join("jobs.htm");
        cli.run(&["export", "--out", page.to_str().unwrap()])?;

        let browser = Browser::start_with(&Options { javascript: false }).await?;
        browser.goto(&file_url(&page)?).await?;
        // The page's scripts did not run: no class, no sort buttons, the
        // filter still hidden; and every row is displayed, past a page.
        assert_eq!(
            browser
                .eval::<String>("return document.documentElement.className;")
                .await?,
            ""
        );
        assert_eq!(
            browser
                .eval::<usize>("return document.querySelectorAll('th button').length;")
                .await?,
            0
        );
        assert!(!browser.find("#filter").await?.is_displayed().await?);
        assert_eq!(
            visible_keys(&browser, "#ns-jobs").await?,
            jobs.keys().cloned().collect::<Vec<_>>()
        );
        // Every value is shown, as JSON.
        let shown: usize = browser
            .eval(
                "return [...document.querySelectorAll('#ns-jobs pre')]\
                 .filter((p) => p.getClientRects().length > 0).length;",
            )
            .await?;
        assert_eq!(shown, jobs.len());
        let value: Value = browser
            .eval("return JSON.parse(document.querySelector('#ns-jobs pre').textContent);")
            .await?;
        assert_eq!(value, jobs["job-00000"]);
        browser.screenshot("html_export_no_javascript").await?;

        browser.close().await
    })
    .await
}
