//! `statelog serve --http`: the JSON API and the event stream over real
//! HTTP, with commits made by other `statelog` processes through the holder.

#[path = "cli/mod.rs"]
mod cli;
#[path = "web/mod.rs"]
mod web;

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use cli::Scratch;
use serde_json::{Value, json};
use web::{Events, Served, encode, get, request};

const STATUSES: [&str; 4] = ["queued", "running", "done", "failed"];

/// The value of job `i`.
fn job(i: usize) -> Value {
    json!({
        "status": STATUSES[i % 4],
        "progress": (i * 37) % 101,
        "attempts": i % 3,
    })
}

/// A store with 250 jobs, imported in one commit.
fn store_with_jobs() -> (Scratch, BTreeMap<String, Value>) {
    let s = Scratch::with_store();
    let jobs: BTreeMap<String, Value> = (0..250).map(|i| (format!("job-{i:03}"), job(i))).collect();
    let file = s.dir.path().join("jobs.json");
    std::fs::write(&file, serde_json::to_vec(&jobs).unwrap()).unwrap();
    s.ok(&["import", "--legacy", "--ns", "jobs", file.to_str().unwrap()]);
    (s, jobs)
}

/// The keys of a records answer.
fn keys(body: &Value) -> Vec<String> {
    body["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts a 400 that names `parameter`.
fn bad_request(addr: &str, path: &str, parameter: &str) {
    let r = get(addr, path);
    assert_eq!(r.status, 400, "{path}: {r:?}");
    let body = r.json();
    assert_eq!(body["parameter"], parameter, "{path}: {body}");
    assert!(!body["error"].as_str().unwrap().is_empty());
}

#[test]
fn records_page_sort_and_filter() {
    let (s, jobs) = store_with_jobs();
    let served = Served::start(&s, "127.0.0.1:0", &[], &[]);
    let addr = served.addr.as_str();

    let namespaces = get(addr, "/api/v1/namespaces").json();
    assert_eq!(
        namespaces["namespaces"],
        json!([{ "name": "jobs", "records": 250 }])
    );
    assert_eq!(namespaces["revision"], 1);

    // The first page: 100 records in key order, with their metadata.
    let first = get(addr, "/api/v1/namespaces/jobs/records").json();
    assert_eq!(first["total"], 250);
    assert_eq!(first["matched"], 250);
    assert_eq!(first["limit"], 100);
    assert_eq!(
        keys(&first),
        jobs.keys().take(100).cloned().collect::<Vec<_>>()
    );
    let r0 = &first["records"][0];
    assert_eq!(r0["value"], jobs["job-000"]);
    assert_eq!(
        (r0["version"].clone(), r0["mod_revision"].clone()),
        (json!(1), json!(1))
    );
    assert!(r0["updated"].as_str().unwrap().ends_with('Z'));

    // Pages of 7 in key order, and past the end.
    let mut paged = Vec::new();
    for offset in (0..250).step_by(7) {
        let page = get(
            addr,
            &format!("/api/v1/namespaces/jobs/records?limit=7&offset={offset}"),
        )
        .json();
        paged.extend(keys(&page));
    }
    assert_eq!(paged, jobs.keys().cloned().collect::<Vec<_>>());
    let past = get(addr, "/api/v1/namespaces/jobs/records?offset=1000").json();
    assert_eq!(
        (keys(&past).len(), past["matched"].clone()),
        (0, json!(250))
    );

    // Sorted by a field, descending, in pages: ties in reverse key order.
    let mut expected: Vec<(&String, u64)> = jobs
        .iter()
        .map(|(k, v)| (k, v["progress"].as_u64().unwrap()))
        .collect();
    expected.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(a.0)));
    let expected: Vec<String> = expected.into_iter().map(|(k, _)| k.clone()).collect();
    let mut sorted = Vec::new();
    for offset in (0..250).step_by(60) {
        let page = get(
            addr,
            &format!(
                "/api/v1/namespaces/jobs/records?sort=-value.progress&limit=60&offset={offset}"
            ),
        )
        .json();
        assert_eq!(page["sort"], "-value.progress");
        sorted.extend(keys(&page));
    }
    assert_eq!(sorted, expected);
    let by_key_desc = get(addr, "/api/v1/namespaces/jobs/records?sort=-key&limit=3").json();
    assert_eq!(keys(&by_key_desc), ["job-249", "job-248", "job-247"]);

    // Filters: text anywhere (any case), and a field's value.
    let failed: Vec<String> = jobs
        .iter()
        .filter(|(_, v)| v["status"] == "failed")
        .map(|(k, _)| k.clone())
        .collect();
    let by_text = get(addr, "/api/v1/namespaces/jobs/records?q=FAILED&limit=1000").json();
    assert_eq!(by_text["matched"], failed.len());
    assert_eq!(by_text["total"], 250);
    assert_eq!(keys(&by_text), failed);
    let by_field = get(
        addr,
        "/api/v1/namespaces/jobs/records?where=status%3Dfailed&limit=1000",
    )
    .json();
    assert_eq!(keys(&by_field), failed);
    let both = get(
        addr,
        "/api/v1/namespaces/jobs/records?where=status%3Dfailed&where=attempts%3D2&limit=1000",
    )
    .json();
    let expected: Vec<String> = jobs
        .iter()
        .filter(|(_, v)| v["status"] == "failed" && v["attempts"] == 2)
        .map(|(k, _)| k.clone())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(keys(&both), expected);
    let by_key_text = get(addr, "/api/v1/namespaces/jobs/records?q=job-12").json();
    assert_eq!(
        keys(&by_key_text),
        [
            "job-120", "job-121", "job-122", "job-123", "job-124", "job-125", "job-126", "job-127",
            "job-128", "job-129"
        ]
    );
    let nothing = get(addr, "/api/v1/namespaces/jobs/records?q=no-such-text").json();
    assert_eq!(
        (keys(&nothing).len(), nothing["matched"].clone()),
        (0, json!(0))
    );

    let (status, _) = served.stop();
    assert!(status.success());
}

#[test]
fn one_record_and_its_history() {
    let s = Scratch::with_store();
    let key = "a/b c?é&%";
    s.ok(&["set", "odd ns", key, r#"{"status": "queued"}"#]);
    s.ok(&[
        "set",
        "odd ns",
        key,
        r#"{"status": "running", "progress": 5}"#,
    ]);
    s.ok(&[
        "set",
        "odd ns",
        key,
        r#"{"status": "done", "progress": 100}"#,
    ]);
    s.ok(&["set", "odd ns", "other", "1"]);
    let served = Served::start(&s, "127.0.0.1:0", &[], &[]);
    let addr = served.addr.as_str();
    let ns = encode("odd ns");

    let record = get(
        addr,
        &format!("/api/v1/namespaces/{ns}/records/{}", encode(key)),
    )
    .json();
    assert_eq!(record["namespace"], "odd ns");
    assert_eq!(record["key"], key);
    assert_eq!(record["version"], 3);
    assert_eq!(record["create_revision"], 1);
    assert_eq!(record["mod_revision"], 3);
    assert_eq!(record["revision"], 4);
    assert_eq!(record["value"], json!({"status": "done", "progress": 100}));
    // A slash may also stay as it is: the key is the rest of the path.
    let plain = get(
        addr,
        &format!("/api/v1/namespaces/{ns}/records/a/b%20c%3F%C3%A9%26%25"),
    )
    .json();
    assert_eq!(plain["key"], key);

    let r = get(addr, &format!("/api/v1/namespaces/{ns}/records/missing"));
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.json()["error"].as_str().unwrap().contains("missing"));
    let r = get(addr, "/api/v1/namespaces/nope/records/x");
    assert_eq!(r.status, 404, "{r:?}");

    let history = get(
        addr,
        &format!("/api/v1/namespaces/{ns}/history/{}", encode(key)),
    );
    assert_eq!(history.status, 200, "{history:?}");
    let history = history.json();
    assert_eq!(history["key"], key);
    assert_eq!(history["total"], 3);
    let versions: Vec<(Value, Value, Value)> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["revision"].clone(),
                v["version"].clone(),
                v["value"]["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        [
            (json!(1), json!(1), json!("queued")),
            (json!(2), json!(2), json!("running")),
            (json!(3), json!(3), json!("done")),
        ]
    );
    // The newest `limit` versions; a delete is a version too.
    let last = get(
        addr,
        &format!("/api/v1/namespaces/{ns}/history/{}?limit=1", encode(key)),
    )
    .json();
    assert_eq!(
        (
            last["total"].clone(),
            last["versions"][0]["revision"].clone()
        ),
        (json!(3), json!(3))
    );
    s.ok(&["del", "odd ns", "other"]);
    let deleted = get(addr, &format!("/api/v1/namespaces/{ns}/history/other")).json();
    assert_eq!(deleted["versions"][1]["deleted"], true);
    assert_eq!(deleted["versions"][1]["revision"], 5);
    let r = get(addr, &format!("/api/v1/namespaces/{ns}/history/never"));
    assert_eq!(r.status, 404, "{r:?}");
    bad_request(
        addr,
        &format!("/api/v1/namespaces/{ns}/history/x?limit=0"),
        "limit",
    );

    let (status, _) = served.stop();
    assert!(status.success());
}

#[test]
fn bad_requests_and_other_methods_are_refused() {
    let (s, _) = store_with_jobs();
    let served = Served::start(&s, "127.0.0.1:0", &[], &[]);
    let addr = served.addr.as_str();

    let r = get(addr, "/api/v1/namespaces/nope/records");
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.json()["error"].as_str().unwrap().contains("\"nope\""));
    let r = get(addr, "/api/v2/namespaces");
    assert_eq!(r.status, 404, "{r:?}");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("/api/v1/watch")
    );

    let records = "/api/v1/namespaces/jobs/records";
    for (query, parameter) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),
        ("offset=-1", "offset"),
        ("offset=1.5", "offset"),
        ("sort=colour", "sort"),
        ("sort=value.", "sort"),
        ("where=status", "where"),
        ("page=2", "page"),
        ("limit=5&limit=6", "limit"),
    ] {
        bad_request(addr, &format!("{records}?{query}"), parameter);
    }
    bad_request(addr, "/api/v1/namespaces?x=1", "x");
    bad_request(
        addr,
        "/api/v1/namespaces/jobs/records/job-001?full=1",
        "full",
    );
    bad_request(addr, "/api/v1/watch?key=job-001", "ns");
    bad_request(addr, "/api/v1/watch?ns=jobs&key=a&prefix=b", "prefix");
    bad_request(addr, "/api/v1/watch?from=yesterday", "from");
    bad_request(addr, "/api/v1/watch?nss=jobs", "nss");
    let r = request(addr, "GET", "/api/v1/watch", &[("Last-Event-ID", "x1")]);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["parameter"], "Last-Event-ID");

    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in [
            "/",
            "/api/v1/namespaces",
            records,
            "/api/v1/namespaces/jobs/records/job-001",
            "/api/v1/watch",
        ] {
            let r = request(addr, method, path, &[("Content-Length", "0")]);
            assert_eq!(r.status, 405, "{method} {path}: {r:?}");
            assert_eq!(r.header("allow"), Some("GET, HEAD"));
            assert!(r.json()["error"].as_str().unwrap().contains("read-only"));
        }
    }
    // Nothing was written.
    assert_eq!(get(addr, "/api/v1/namespaces").json()["revision"], 1);
    let head = request(addr, "HEAD", "/api/v1/namespaces", &[]);
    assert_eq!(head.status, 200);

    // Without a token, only requests for a loopback name are answered.
    let r = request(
        addr,
        "GET",
        "/api/v1/namespaces",
        &[("Host", "rebound.example:80")],
    );
    assert_eq!(r.status, 403, "{r:?}");
    for host in ["localhost", "127.0.0.1:1", "[::1]:8080"] {
        assert_eq!(
            request(addr, "GET", "/", &[("Host", host)]).status,
            200,
            "{host}"
        );
    }

    // The page and its files, with headers that keep it to itself.
    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.body.contains("<script src=\"/app.js\""));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let script = get(addr, "/app.js");
    assert_eq!(script.status, 200);
    assert!(script.body.contains("EventSource"));
    let style = get(addr, "/app.css");
    assert_eq!(
        style.header("content-type"),
        Some("text/css; charset=utf-8")
    );

    let (status, _) = served.stop();
    assert!(status.success());
}

#[test]
fn a_token_is_required_when_given_and_off_loopback() {
    let (s, _) = store_with_jobs();
    // Another address than loopback without a token: refused, nothing served.
    let run = s.run(&["serve", "--http", "0.0.0.0:0"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("token"), "{}", run.stderr);
    let run = s.run(&["serve", "--http", "0.0.0.0:0", "--http-token", "short"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("16 characters"), "{}", run.stderr);
    let run = s.run(&["serve", "--http-token", "0123456789abcdef"]);
    assert_eq!(run.code, 2, "{run:?}");

    let token = "0123456789abcdef-token";
    let served = Served::start(&s, "127.0.0.1:0", &[], &[("STATELOG_HTTP_TOKEN", token)]);
    let addr = served.addr.as_str();
    for path in [
        "/",
        "/api/v1/namespaces",
        "/api/v1/namespaces/jobs/records",
        "/api/v1/watch",
    ] {
        let r = get(addr, path);
        assert_eq!(r.status, 401, "{path}: {r:?}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert!(r.json()["error"].as_str().unwrap().contains("token"));
        let r = request(
            addr,
            "GET",
            path,
            &[("Authorization", "Bearer 0123456789abcdef-tokem")],
        );
        assert_eq!(r.status, 401, "{path}: {r:?}");
        let r = get(addr, &format!("{path}?token=0123456789abcdef-toke"));
        assert_eq!(r.status, 401, "{path}: {r:?}");
        let r = request(addr, "GET", path, &[("Cookie", "statelog_token=wrong")]);
        assert_eq!(r.status, 401, "{path}: {r:?}");
    }
    // A wrong token gets 401 for other methods too; the right one 405.
    let r = request(addr, "DELETE", "/api/v1/namespaces", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    let bearer = format!("Bearer {token}");
    let r = request(
        addr,
        "DELETE",
        "/api/v1/namespaces",
        &[("Authorization", &bearer)],
    );
    assert_eq!(r.status, 405, "{r:?}");

    // The right one, three ways; a page opened with ?token= sets the cookie.
    let r = request(
        addr,
        "GET",
        "/api/v1/namespaces",
        &[("Authorization", &bearer)],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["namespaces"][0]["records"], 250);
    let r = get(addr, &format!("/?token={token}"));
    assert_eq!(r.status, 200, "{r:?}");
    let cookie = r.header("set-cookie").expect("a cookie");
    assert!(
        cookie.starts_with(&format!("statelog_token={token};")),
        "{cookie}"
    );
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let cookie = format!("statelog_token={token}");
    let r = request(
        addr,
        "GET",
        "/api/v1/namespaces/jobs/records?limit=1",
        &[("Cookie", &cookie)],
    );
    assert_eq!(r.status, 200, "{r:?}");
    // With a token, any host name is answered.
    let r = request(
        addr,
        "GET",
        "/api/v1/namespaces",
        &[("Authorization", &bearer), ("Host", "dashboard.example")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let mut events = Events::open(addr, &format!("?ns=jobs&token={token}"), &[]);
    s.ok(&["set", "jobs", "with-token", "1"]);
    let change = events.next_change().expect("a change");
    assert_eq!(change.id.as_deref(), Some("2"));

    let (status, _) = served.stop();
    assert!(status.success());
}

#[test]
fn a_hundred_event_streams_each_receive_a_commit() {
    let (s, _) = store_with_jobs();
    let served = Served::start(&s, "127.0.0.1:0", &[], &[]);
    let addr = served.addr.clone();
    let clients = 100;
    let ready = Arc::new(Barrier::new(clients + 2));
    // One more stream, on another namespace: it sees only that one's commit.
    let elsewhere = {
        let addr = addr.clone();
        let ready = Arc::clone(&ready);
        std::thread::spawn(move || {
            let mut events = Events::open(&addr, "?ns=other", &[]);
            ready.wait();
            events.next_change().expect("a change event")
        })
    };
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let addr = addr.clone();
            let ready = Arc::clone(&ready);
            std::thread::spawn(move || {
                let mut events = Events::open(&addr, "?ns=jobs", &[]);
                ready.wait();
                events.next_change().expect("a change event")
            })
        })
        .collect();
    ready.wait();
    // Every stream is open (its watch started before its answer did).
    let set = s.json(&["set", "jobs", "job-new", r#"{"status": "queued"}"#]);
    let revision = set["revision"].as_u64().unwrap();
    for thread in threads {
        let change = thread.join().expect("a client");
        assert_eq!(change.id, Some(revision.to_string()));
        let data = change.json();
        assert_eq!(data["revision"], revision);
        assert_eq!(data["records"][0]["key"], "job-new");
        assert_eq!(data["records"][0]["value"], json!({"status": "queued"}));
    }
    s.ok(&["set", "other", "x", "1"]);
    let other = elsewhere.join().expect("the other client");
    assert_eq!(other.id, Some((revision + 1).to_string()));
    assert_eq!(other.json()["records"][0]["namespace"], "other");
    let (status, out) = served.stop();
    assert!(status.success(), "{out}");
}

#[test]
fn streams_resume_after_the_last_event_seen() {
    let s = Scratch::with_store();
    for i in 1..=5 {
        s.ok(&["set", "jobs", &format!("j{i}"), &i.to_string()]);
    }
    s.ok(&["del", "jobs", "j1"]);
    let served = Served::start(&s, "127.0.0.1:0", &[], &[]);
    let addr = served.addr.as_str();
    // As a reconnecting EventSource: after the last event seen.
    let mut events = Events::open(addr, "?ns=jobs", &[("Last-Event-ID", "2")]);
    let ids: Vec<String> = (0..4)
        .map(|_| events.next_change().unwrap().id.unwrap())
        .collect();
    assert_eq!(ids, ["3", "4", "5", "6"]);
    // From a revision, one key.
    let mut events = Events::open(addr, "?ns=jobs&key=j1&from=1", &[]);
    let first = events.next_change().unwrap().json();
    assert_eq!(
        (
            first["revision"].clone(),
            first["records"][0]["value"].clone()
        ),
        (json!(1), json!(1))
    );
    let deleted = events.next_change().unwrap().json();
    assert_eq!(deleted["revision"], 6);
    assert_eq!(
        deleted["records"][0],
        json!({"namespace": "jobs", "key": "j1", "deleted": true})
    );
    // A prefix, live.
    let mut events = Events::open(addr, "?ns=jobs&prefix=k", &[]);
    s.ok(&["set", "jobs", "j9", "9"]);
    s.ok(&["set", "jobs", "k1", "1"]);
    let change = events.next_change().unwrap().json();
    assert_eq!(
        (
            change["revision"].clone(),
            change["records"][0]["key"].clone()
        ),
        (json!(8), json!("k1"))
    );
    let (status, _) = served.stop();
    assert!(status.success());
}

#[test]
fn stopping_ends_open_streams() {
    let (s, _) = store_with_jobs();
    let served = Served::start(&s, "127.0.0.1:0", &[], &[]);
    let mut streams: Vec<Events> = (0..3)
        .map(|_| Events::open(&served.addr, "", &[]))
        .collect();
    let (status, out) = served.stop();
    assert!(status.success(), "{out}");
    let stopped: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(stopped["event"], "stopped");
    assert_eq!(stopped["signal"], "SIGTERM");
    for events in &mut streams {
        // The stream ends (progress events may come first).
        while let Some(e) = events.next() {
            assert_eq!(e.event, "progress", "{e:?}");
        }
    }
    // And the store was checkpointed and released: it opens again.
    s.ok(&["get", "jobs", "job-001"]);
}
