//! Snapshots: export and import in every format, the scenarios of the field
//! notes (a sync-state file, a STATE.md, per-job status for a dashboard), bad
//! input, and atomicity.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::json;
use statelog::snapshot::{
    self, Columns, ExportOptions, Format, ImportMode, ImportOptions, KeyNormalizer, LegacyOptions,
};
use statelog::{Error, Options, RawValue, Store};

const FORMATS: [Format; 4] = [
    Format::Json,
    Format::JsonCompact,
    Format::JsonLines,
    Format::Markdown,
];

const MERGE: ImportMode = ImportMode::Merge {
    check_versions: false,
    skip_conflicts: false,
};
const CHECKED: ImportMode = ImportMode::Merge {
    check_versions: true,
    skip_conflicts: false,
};

fn export(store: &Store, options: &ExportOptions) -> Vec<u8> {
    let mut out = Vec::new();
    snapshot::export(store, &mut out, options).expect("export");
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

/// Every record with its metadata, to compare stores.
fn contents(store: &Store) -> Vec<(String, String, statelog::Versioned<RawValue>)> {
    let mut out = Vec::new();
    for ns in store.namespaces().unwrap() {
        for item in store.list_raw(&ns, ..).unwrap() {
            let (key, record) = item.unwrap();
            out.push((ns.clone(), key, record));
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    job_name: String,
    status: String,
    progress: u8,
    started: Option<String>,
}

fn job(name: &str, status: &str, progress: u8) -> Job {
    Job {
        job_name: name.into(),
        status: status.into(),
        progress,
        started: None,
    }
}

/// A store with jobs (the dashboard of field note 002), tasks, and values
/// JSON cannot hold as they are.
fn sample(dir: &std::path::Path) -> Store {
    let store = common::open(dir);
    store
        .put(
            "jobs",
            "prepare_malert_data",
            &job("prepare_malert_data", "running", 50),
        )
        .unwrap();
    store
        .put("jobs", "weather", &job("weather", "completed", 100))
        .unwrap();
    store
        .put("jobs", "test_job_a", &job("test_job_a", "running", 10))
        .unwrap();
    store
        .update(
            "jobs",
            "test_job_a",
            |j: Option<Job>| -> statelog::Result<Job> {
                let mut j = j.unwrap();
                j.progress = 20;
                Ok(j)
            },
        )
        .unwrap();
    store
        .put(
            "tasks",
            "task_123",
            &json!({"status": "queued", "stages": {"audio": 0.5}}),
        )
        .unwrap();
    store.put("odd", "big", &u64::MAX).unwrap();
    store.put("odd", "nan", &f64::NAN).unwrap();
    store
        .put(
            "odd",
            "bytes",
            &serde_bytes::ByteBuf::from(vec![0u8, 255, 7]),
        )
        .unwrap();
    let mut by_id = std::collections::BTreeMap::new();
    by_id.insert(7u32, "seven");
    store.put("odd", "by_id", &by_id).unwrap();
    store.put("odd", "pipe | key `x`", &"a\nb").unwrap();
    store.delete("tasks", "never").unwrap();
    store
}

#[test]
fn every_format_round_trips_exactly_and_deterministically() {
    let dir = common::store_dir();
    let store = sample(&dir.path().join("source"));
    for (i, format) in FORMATS.into_iter().enumerate() {
        let options = ExportOptions::new(format);
        let first = export(&store, &options);
        assert_eq!(
            first,
            export(&store, &options),
            "{format:?}: two exports differ"
        );

        let copy = common::open(&dir.path().join(format!("copy{i}")));
        let report = snapshot::import(
            &copy,
            first.as_slice(),
            &ImportOptions::new(format, ImportMode::Restore),
        )
        .unwrap();
        assert!(report.applied);
        assert_eq!(report.records, 9);
        assert_eq!(report.revision, Some(store.revision()));
        assert_eq!(copy.revision(), store.revision());
        assert_eq!(contents(&copy), contents(&store), "{format:?}");
        assert_eq!(text(&export(&copy, &options)), text(&first), "{format:?}");
        // The typed values decode as before.
        let j: Job = copy.get("jobs", "test_job_a").unwrap().unwrap().value;
        assert_eq!(j.progress, 20);
        let nan: f64 = copy.get("odd", "nan").unwrap().unwrap().value;
        assert!(nan.is_nan());
    }
}

#[test]
fn json_layout_is_documented_and_plain_where_it_can_be() {
    let dir = common::store_dir();
    let store = sample(dir.path());
    let json = text(&export(&store, &ExportOptions::new(Format::Json)));
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["format"], "statelog-snapshot");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["revision"], store.revision());
    let t = &doc["namespaces"]["jobs"]["test_job_a"];
    assert_eq!(t["version"], 2);
    assert_eq!(t["create_revision"], 3);
    assert_eq!(t["mod_revision"], 4);
    assert_eq!(t["value"]["status"], "running");
    assert_eq!(t["value"]["progress"], 20);
    assert_eq!(
        doc["namespaces"]["odd"]["big"]["value"]["$int"],
        "18446744073709551615"
    );
    assert_eq!(doc["namespaces"]["odd"]["nan"]["value"]["$float"], "NaN");
    assert_eq!(doc["namespaces"]["odd"]["bytes"]["value"]["$bin"], "AP8H");
    assert_eq!(
        doc["namespaces"]["odd"]["by_id"]["value"]["$map"],
        json!([[7, "seven"]])
    );
    // Fields keep their declared order (as stored), namespaces and keys are sorted.
    let job_at = json.find("\"job_name\"").unwrap();
    assert!(job_at < json.find("\"status\": \"running\"").unwrap());
    assert!(json.find("\"jobs\"").unwrap() < json.find("\"odd\"").unwrap());
    assert!(json.find("\"prepare_malert_data\"").unwrap() < json.find("\"test_job_a\"").unwrap());

    let compact = text(&export(&store, &ExportOptions::new(Format::JsonCompact)));
    assert_eq!(compact.lines().count(), 1);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&compact).unwrap(),
        doc
    );

    let lines = text(&export(&store, &ExportOptions::new(Format::JsonLines)));
    let lines: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 11);
    assert_eq!(lines[0]["format"], "statelog-snapshot-lines");
    assert_eq!(lines[10], json!({"records": 9}));
    assert_eq!(lines[1]["namespace"], "jobs");
    assert_eq!(lines[1]["key"], "prepare_malert_data");
}

#[test]
fn scope_narrows_the_export_and_keeps_it_stable() {
    let dir = common::store_dir();
    let store = sample(dir.path());
    let jobs = ExportOptions::new(Format::JsonLines).namespaces(["jobs", "absent"]);
    let before = export(&store, &jobs);
    assert_eq!(text(&before).lines().count(), 5);
    let prefixed = ExportOptions::new(Format::JsonLines)
        .namespaces(["jobs"])
        .key_prefix("test_");
    let out = text(&export(&store, &prefixed));
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.contains("\"key\":\"test_job_a\""));

    // A write elsewhere changes the revision in the header, nothing else.
    store.put("tasks", "task_9", &1).unwrap();
    let after = text(&export(&store, &jobs));
    let body = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&after), body(&text(&before)));

    let summary = snapshot::export(&store, Vec::new(), &jobs).unwrap();
    assert_eq!((summary.namespaces, summary.records), (1, 3));
    assert_eq!(summary.header.revision, store.revision());

    let err = snapshot::export(
        &store,
        Vec::new(),
        &ExportOptions::new(Format::Json).namespaces(["bad\nname"]),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidKey { .. }), "{err}");
}

#[test]
fn markdown_dashboard_has_tables_sections_and_escapes() {
    let dir = common::store_dir();
    let store = sample(dir.path());
    let md = text(&export(&store, &ExportOptions::new(Format::Markdown)));
    let rev = store.revision();
    assert!(
        md.starts_with(&format!("# Snapshot at revision {rev} (")),
        "{md}"
    );
    assert!(md.contains(&format!("\n- revision: {rev}\n")));
    // Automatic columns: the jobs' scalar fields, in declared order.
    assert!(
        md.contains("| key | version | updated | job_name | status | progress | started |"),
        "{md}"
    );
    assert!(md.contains("| test_job_a | 2 | "), "{md}");
    assert!(md.contains("| test_job_a | running | 20 | null |"), "{md}");
    // A scalar value gets a (value) column; pipes, backticks and newlines are escaped.
    assert!(md.contains("| pipe \\| key \\`x\\` | 1 | "), "{md}");
    assert!(md.contains(" | a<br>b |"), "{md}");
    assert!(md.contains("### pipe \\| key \\`x\\`\n"), "{md}");
    assert!(md.contains("\n### test_job_a\n\n- version: 2\n- created: revision 3\n"));
    assert!(
        md.contains("```json\n{\n  \"job_name\": \"test_job_a\",\n"),
        "{md}"
    );

    let named = ExportOptions::new(Format::Markdown)
        .namespaces(["jobs"])
        .columns(Columns::Named(vec!["progress".into(), "missing".into()]));
    let md = text(&export(&store, &named));
    assert!(
        md.contains("| key | version | updated | progress | missing |"),
        "{md}"
    );
    assert!(md.contains(" | 50 |  |\n"), "{md}");
    assert!(!md.contains("## odd"));
}

#[test]
fn restore_needs_an_empty_store_and_keeps_an_empty_snapshot_empty() {
    let dir = common::store_dir();
    let empty = common::open(&dir.path().join("empty"));
    for format in FORMATS {
        let file = export(&empty, &ExportOptions::new(format));
        let target = common::open(&dir.path().join(format!("t-{}", format.extension())));
        let report = snapshot::import(
            &target,
            file.as_slice(),
            &ImportOptions::new(format, ImportMode::Restore),
        )
        .unwrap();
        assert_eq!((report.records, report.revision), (0, None));
        assert_eq!(export(&target, &ExportOptions::new(format)), file);
    }
    let full = sample(&dir.path().join("full"));
    let file = export(&full, &ExportOptions::new(Format::Json));
    let err = snapshot::import(
        &full,
        file.as_slice(),
        &ImportOptions::new(Format::Json, ImportMode::Restore),
    )
    .unwrap_err();
    assert!(matches!(err, Error::NotEmpty { .. }), "{err}");
}

/// Field note 001: a workflow keeps STATE.md. The file is rendered from the
/// store, edited, and merged back; a stale edit is a conflict, not a lost update.
#[test]
fn state_md_edits_merge_back_and_stale_edits_conflict() {
    let dir = common::store_dir();
    let store = common::open(dir.path());
    for (id, status) in [
        ("wave1-fetch", "done"),
        ("wave1-parse", "running"),
        ("wave2-index", "queued"),
    ] {
        store
            .put(
                "tasks",
                id,
                &json!({"status": status, "notes": "Ünïcödé | `ticks`"}),
            )
            .unwrap();
    }
    let md = text(&export(&store, &ExportOptions::new(Format::Markdown)));
    let edited = md.replacen("\"status\": \"running\"", "\"status\": \"done\"", 1);
    assert_ne!(edited, md);
    let revision = store.revision();
    let report = snapshot::import(
        &store,
        edited.as_bytes(),
        &ImportOptions::new(Format::Markdown, CHECKED),
    )
    .unwrap();
    assert!(report.applied);
    assert_eq!((report.written, report.unchanged), (1, 2));
    assert_eq!(report.revision, Some(revision + 1));
    let parse: serde_json::Value = store.get("tasks", "wave1-parse").unwrap().unwrap().value;
    assert_eq!(parse["status"], "done");
    assert_eq!(
        store
            .get_raw("tasks", "wave1-fetch")
            .unwrap()
            .unwrap()
            .version,
        1
    );

    // Someone else moves wave2 on; an edit of the old file is now stale.
    store
        .put(
            "tasks",
            "wave2-index",
            &json!({"status": "running", "notes": ""}),
        )
        .unwrap();
    let stale = md
        .replacen("\"status\": \"queued\"", "\"status\": \"cancelled\"", 1)
        .replacen("\"status\": \"done\"", "\"status\": \"retry\"", 1);
    let before = contents(&store);
    let report = snapshot::import(
        &store,
        stale.as_bytes(),
        &ImportOptions::new(Format::Markdown, CHECKED),
    )
    .unwrap();
    assert!(!report.applied);
    assert_eq!(report.revision, None);
    // wave1-parse was rewritten since the export too (version 2 now).
    let mut stale_keys: Vec<_> = report.conflicts.iter().map(|c| c.key.as_str()).collect();
    stale_keys.sort();
    assert_eq!(
        stale_keys,
        ["wave1-fetch", "wave1-parse", "wave2-index"][1..]
    );
    let c = report
        .conflicts
        .iter()
        .find(|c| c.key == "wave2-index")
        .unwrap();
    assert_eq!((c.expected, c.actual), (1, 2));
    assert_eq!(
        contents(&store),
        before,
        "a refused import changed the store"
    );

    // Asked to, it applies the fresh record and reports the stale ones.
    let report = snapshot::import(
        &store,
        stale.as_bytes(),
        &ImportOptions::new(
            Format::Markdown,
            ImportMode::Merge {
                check_versions: true,
                skip_conflicts: true,
            },
        ),
    )
    .unwrap();
    assert!(report.applied);
    assert_eq!(report.conflicts.len(), 2);
    assert_eq!(report.written, 1);
    let fetch: serde_json::Value = store.get("tasks", "wave1-fetch").unwrap().unwrap().value;
    assert_eq!(fetch["status"], "retry");
    let index: serde_json::Value = store.get("tasks", "wave2-index").unwrap().unwrap().value;
    assert_eq!(index["status"], "running");

    // Without version checks, a merge is last-writer-wins and idempotent.
    let report = snapshot::import(
        &store,
        md.as_bytes(),
        &ImportOptions::new(Format::Markdown, MERGE),
    )
    .unwrap();
    assert_eq!(report.written, 3);
    let again = snapshot::import(
        &store,
        md.as_bytes(),
        &ImportOptions::new(Format::Markdown, MERGE),
    )
    .unwrap();
    assert_eq!(
        (again.written, again.unchanged, again.revision),
        (0, 3, None)
    );
}

/// Field note 000: `sync_state.json`, website -> file -> {hash, document_id,
/// uploaded_at, file_size, previous_document_id}, with dotted and hyphenated
/// keys for the same site.
#[test]
fn legacy_sync_state_normalises_reports_collisions_and_merges_on_request() {
    let file = r#"{
  "jgengineering.ie": {
    "products.md": {"hash": "a1", "document_id": "doc-1", "uploaded_at": "2025-10-04T10:00:00", "file_size": 1200}
  },
  "jgengineering-ie": {
    "products.md": {"hash": "a0", "document_id": "doc-0", "uploaded_at": "2025-10-03T09:00:00", "file_size": 1100},
    "llms.txt": {"hash": "b7", "document_id": "doc-7", "uploaded_at": "2025-10-03T09:00:05", "file_size": 88, "previous_document_id": "doc-6"}
  },
  "WWW.Example.com": {
    "index.md": {"hash": "c3", "document_id": "doc-9", "uploaded_at": "2025-10-04T11:00:00", "file_size": 10}
  },
  "rivvy-create": {}
}"#;
    let dir = common::store_dir();
    let store = common::open(dir.path());
    store.put("other", "keep", &1).unwrap();
    let normalizer = KeyNormalizer::new()
        .lowercase()
        .strip_www()
        .dots_to_hyphens();
    let options = LegacyOptions::new("sync").normalizer(normalizer);

    let report = snapshot::import_legacy(&store, file.as_bytes(), &options).unwrap();
    assert!(!report.applied);
    assert_eq!((report.members, report.records, report.written), (4, 3, 0));
    assert_eq!(report.collisions.len(), 1);
    let c = &report.collisions[0];
    assert_eq!(c.key, "jgengineering-ie");
    assert_eq!(c.sources, ["jgengineering.ie", "jgengineering-ie"]);
    assert_eq!(c.clashing_fields, ["products.md"]);
    assert_eq!(
        report.renamed,
        [
            ("jgengineering.ie".to_owned(), "jgengineering-ie".to_owned()),
            ("WWW.Example.com".to_owned(), "example-com".to_owned())
        ]
    );
    assert_eq!(
        store.revision(),
        1,
        "a refused legacy import wrote something"
    );

    let report = snapshot::import_legacy(
        &store,
        file.as_bytes(),
        &options.clone().merge_collisions(true),
    )
    .unwrap();
    assert!(report.applied);
    assert_eq!(report.written, 3);
    assert_eq!(report.revision, Some(2));
    let site: serde_json::Value = store
        .get("sync", "jgengineering-ie")
        .unwrap()
        .unwrap()
        .value;
    // Later in the file wins for a clashing member; the others are united.
    assert_eq!(site["products.md"]["document_id"], "doc-0");
    assert_eq!(site["llms.txt"]["previous_document_id"], "doc-6");
    let example: serde_json::Value = store.get("sync", "example-com").unwrap().unwrap().value;
    assert_eq!(example["index.md"]["file_size"], 10);
    assert_eq!(store.list_raw("sync", ..).unwrap().count(), 3);

    // Importing the same file again changes nothing.
    let again =
        snapshot::import_legacy(&store, file.as_bytes(), &options.merge_collisions(true)).unwrap();
    assert_eq!(
        (again.written, again.unchanged, again.revision),
        (0, 3, None)
    );

    // The imported namespace exports like any other.
    let json = text(&export(
        &store,
        &ExportOptions::new(Format::Json).namespaces(["sync"]),
    ));
    assert!(
        json.contains("\"uploaded_at\": \"2025-10-04T11:00:00\""),
        "{json}"
    );
}

#[test]
fn legacy_errors_say_where_and_change_nothing() {
    let dir = common::store_dir();
    let store = common::open(dir.path());
    let options = LegacyOptions::new("sync");
    let cases: &[(&str, &str, u64)] = &[
        ("[1, 2]", "must be a JSON object", 1),
        ("{\"a\": 1,\n \"a\": 2}", "appears twice", 2),
        ("{\"a\": {\"x\": 1}\n \"b\": 2}", "comma is missing", 2),
        ("{\"\": 1}", "cannot be stored", 1),
        ("{\"a\": 1} 2", "after the end", 1),
    ];
    for (input, message, line) in cases {
        let err = snapshot::import_legacy(&store, input.as_bytes(), &options).unwrap_err();
        match &err {
            Error::InvalidSnapshot { line: l, .. } => assert_eq!(l, line, "{input}: {err}"),
            other => panic!("{input}: {other}"),
        }
        assert!(err.to_string().contains(message), "{input}: {err}");
    }
    let merge = options
        .clone()
        .normalizer(KeyNormalizer::new().custom(|_| "same".to_owned()))
        .merge_collisions(true);
    let err = snapshot::import_legacy(&store, br#"{"a": {"x": 1}, "b": 2}"#.as_slice(), &merge)
        .unwrap_err();
    assert!(err.to_string().contains("is not an object"), "{err}");
    assert_eq!(store.revision(), 0);
}

/// What an import must refuse, with where and why; the store stays unchanged.
#[test]
fn bad_input_is_refused_with_its_place() {
    let dir = common::store_dir();
    let store = sample(dir.path());
    let json = text(&export(&store, &ExportOptions::new(Format::Json)));
    let lines = text(&export(&store, &ExportOptions::new(Format::JsonLines)));
    let md = text(&export(&store, &ExportOptions::new(Format::Markdown)));
    let line_of = |text: &str, needle: &str| {
        text[..text.find(needle).unwrap()].matches('\n').count() as u64 + 1
    };

    struct Case {
        format: Format,
        input: String,
        message: &'static str,
        line: u64,
    }
    let cases = vec![
        Case {
            format: Format::Json,
            input: json.replacen("\"version\": 2,", "\"version\": 2", 1),
            message: "comma is missing",
            line: line_of(&json, "\"version\": 2,") + 1,
        },
        Case {
            format: Format::Json,
            input: json.replacen("\"version\": 1,", "\"version\": 9,", 1),
            message: "format version 9",
            line: 3,
        },
        Case {
            format: Format::Json,
            input: json.replacen(
                "\"format\": \"statelog-snapshot\"",
                "\"format\": \"other\"",
                1,
            ),
            message: "not a statelog snapshot",
            line: 2,
        },
        Case {
            format: Format::Json,
            input: json.replacen("\"weather\": {", "\"test_job_a\": {", 1),
            message: "appears twice",
            line: line_of(&json, "\"weather\": {"),
        },
        Case {
            format: Format::Json,
            input: json.replacen(
                "\"value\": {\"$float\": \"NaN\"}",
                "\"value\": {\"$nope\": 1}",
                1,
            ),
            message: "unknown escape \"$nope\"",
            line: line_of(&json, "\"value\": {\"$float\": \"NaN\"}"),
        },
        Case {
            format: Format::Json,
            input: json.replacen("\"mod_revision\": 4,", "\"mod_revision\": 999,", 1),
            message: "after the snapshot's revision",
            line: line_of(&json, "\"test_job_a\": {"),
        },
        Case {
            format: Format::JsonLines,
            input: {
                let mut l: Vec<&str> = lines.lines().collect();
                l.insert(3, l[2]);
                l.join("\n") + "\n"
            },
            message: "appears twice",
            line: 4,
        },
        Case {
            format: Format::JsonLines,
            input: lines[..lines.find("{\"records\":").unwrap()].to_owned(),
            message: "cut short",
            line: 11,
        },
        Case {
            format: Format::JsonLines,
            input: lines.replacen("{\"records\":9}", "{\"records\":8}", 1),
            message: "says the snapshot has 8 records, but 9 were read",
            line: 11,
        },
        Case {
            format: Format::JsonLines,
            input: lines.replacen("\"key\":\"weather\"", "\"key\":\"\"", 1),
            message: "empty",
            line: line_of(&lines, "\"key\":\"weather\""),
        },
        Case {
            format: Format::Markdown,
            input: md.replacen(
                "```json\n{\n  \"job_name\": \"weather\"",
                "```text\n{\n  \"job_name\": \"weather\"",
                1,
            ),
            message: "no ```json block",
            line: line_of(&md, "```json\n{\n  \"job_name\": \"weather\""),
        },
        Case {
            format: Format::Markdown,
            input: md.replacen(
                "  \"job_name\": \"weather\",",
                "  \"job_name\": weather,",
                1,
            ),
            message: "not JSON",
            line: line_of(&md, "  \"job_name\": \"weather\","),
        },
        Case {
            format: Format::Markdown,
            input: md.replacen("### weather\n", "### wether\n", 1),
            message: "summary table lists key \"weather\"",
            line: line_of(&md, "### weather\n"),
        },
        Case {
            format: Format::Markdown,
            input: md.replacen("- version: 1\n- revision:", "- version: 2\n- revision:", 1),
            message: "format version 2",
            line: 4,
        },
        Case {
            format: Format::Markdown,
            input: md.replacen("- created: revision 3\n", "", 1),
            message: "lacks the item \"created\"",
            line: line_of(&md, "### test_job_a\n") + 2,
        },
        Case {
            format: Format::Markdown,
            input: md.replacen("## jobs\n", "", 1),
            message: "a table may only follow a `## namespace` heading",
            // One line up: the heading line is gone.
            line: line_of(&md, "| key | version | updated | job") - 1,
        },
        Case {
            format: Format::Markdown,
            input: format!(
                "{}\n### lone\n\n- version: 1\n- created: revision 1\n- modified: revision 1\n\
                 - updated: 2026-01-02T03:04:05Z\n\n```json\n1\n```\n\n<!-- end of snapshot -->\n",
                &md[..md.find("\n## ").unwrap()]
            ),
            message: "not under a `## namespace` heading",
            line: line_of(&md, "\n## ") + 1,
        },
        Case {
            format: Format::Markdown,
            input: md.replacen("\n<!-- end of snapshot -->\n", "\n", 1),
            message: "cut short",
            line: 0,
        },
        Case {
            // The block now runs on to the next closing fence, over a heading.
            format: Format::Markdown,
            input: md.replacen("}\n```\n\n### test", "}\n\n### test", 1),
            message: "this is not JSON",
            line: line_of(&md, "### test_job_a\n") - 1,
        },
        Case {
            format: Format::Markdown,
            input: md.replacen(
                "```\n\n<!-- end of snapshot -->",
                "\n<!-- end of snapshot -->",
                1,
            ),
            message: "not closed",
            line: md[..md.rfind("```json").unwrap()].matches('\n').count() as u64 + 1,
        },
    ];
    let before = contents(&store);
    for case in &cases {
        assert_ne!(case.input.len(), 0);
        for mode in [MERGE, CHECKED] {
            let err = snapshot::import(
                &store,
                case.input.as_bytes(),
                &ImportOptions::new(case.format, mode),
            )
            .unwrap_err();
            let shown = err.to_string();
            assert!(shown.contains(case.message), "{:?}: {shown}", case.format);
            assert!(shown.contains("nothing was imported"), "{shown}");
            match &err {
                Error::InvalidSnapshot { line, .. } => {
                    if case.line != 0 {
                        assert_eq!(*line, case.line, "{shown}");
                    }
                    assert!(*line > 0, "{shown}");
                }
                other => panic!("{other}"),
            }
        }
        let target = common::open(&dir.path().join("restore-target"));
        assert!(
            snapshot::import(
                &target,
                case.input.as_bytes(),
                &ImportOptions::new(case.format, ImportMode::Restore)
            )
            .is_err()
        );
        assert_eq!(target.revision(), 0);
    }
    assert_eq!(contents(&store), before);
}

#[test]
fn errors_name_column_and_section() {
    let input = "{\"format\": \"statelog-snapshot\", \"version\": 1, \"revision\": 1,\n \
                 \"time\": \"2026-01-02T03:04:05Z\", \"namespaces\": {\"ns\": {\"k\": {\n  \
                 \"version\": 1, \"create_revision\": 1, \"mod_revision\": 1,\n  \
                 \"updated_at\": \"2026-01-02T03:04:05Z\", \"value\": [1, 2,]}}}}";
    let err = snapshot::read(input.as_bytes(), Format::Json).unwrap_err();
    match &err {
        Error::InvalidSnapshot {
            line,
            column,
            section,
            ..
        } => {
            assert_eq!(*line, 4);
            assert_eq!(*column, Some(55));
            assert_eq!(section.as_deref(), Some("record ns/k"));
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string()
            .starts_with("invalid snapshot at line 4, column 55 (record ns/k)")
    );
}

/// Every prefix of a valid file and every byte flipped in it: the import
/// succeeds completely or fails without changing the store.
#[test]
fn imports_are_all_or_nothing_on_damaged_input() {
    let dir = common::store_dir();
    let source = common::open(&dir.path().join("source"));
    source.put("a", "x", &json!({"n": 1, "s": "é|`"})).unwrap();
    source.put("a", "y", &json!([1.5, null, true])).unwrap();
    source.put("b", "z", &u64::MAX).unwrap();
    let target = common::open(&dir.path().join("target"));
    target.put("a", "x", &"old").unwrap();
    target.put("c", "keep", &1).unwrap();
    let before = contents(&target);
    for format in FORMATS {
        let file = export(&source, &ExportOptions::new(format));
        let mut inputs: Vec<Vec<u8>> = (0..file.len()).map(|n| file[..n].to_vec()).collect();
        for at in (0..file.len()).step_by(3) {
            let mut flipped = file.clone();
            flipped[at] ^= 0x24;
            inputs.push(flipped);
        }
        let (mut ok, mut refused) = (0, 0);
        for input in inputs {
            let result = snapshot::import(
                &target,
                input.as_slice(),
                &ImportOptions::new(format, MERGE),
            );
            match result {
                Ok(report) => {
                    ok += 1;
                    // Whatever was read was written whole; put the target back.
                    let (_, records) = snapshot::read(input.as_slice(), format).unwrap();
                    assert_eq!(report.records as usize, records.len());
                    for r in &records {
                        let stored = target.get_raw(&r.namespace, &r.key).unwrap().unwrap();
                        assert_eq!(stored.value, r.value);
                    }
                    target
                        .transaction(|tx| {
                            for r in &records {
                                tx.delete(&r.namespace, &r.key)?;
                            }
                            for (ns, key, record) in &before {
                                tx.put_raw(ns, key, record.value.clone())?;
                            }
                            Ok::<_, Error>(())
                        })
                        .unwrap();
                }
                Err(Error::InvalidSnapshot { .. }) => {
                    refused += 1;
                    let now: Vec<_> = contents(&target)
                        .into_iter()
                        .map(|(n, k, r)| (n, k, r.value))
                        .collect();
                    let was: Vec<_> = before
                        .iter()
                        .map(|(n, k, r)| (n.clone(), k.clone(), r.value.clone()))
                        .collect();
                    assert_eq!(now, was, "{format:?}: a refused import changed the store");
                }
                Err(other) => panic!("{format:?}: {other}"),
            }
        }
        assert!(
            refused > file.len() / 2,
            "{format:?}: only {refused} refused"
        );
        assert!(ok >= 1, "{format:?}: the whole file must import");
    }
}

#[test]
fn progress_is_reported_and_writer_errors_surface() {
    let dir = common::store_dir();
    let store = common::open(dir.path());
    store
        .transaction(|tx| {
            for i in 0..600 {
                tx.put("n", &format!("k{i:04}"), &i)?;
            }
            Ok::<_, Error>(())
        })
        .unwrap();
    for format in FORMATS {
        let seen = Arc::new(AtomicU64::new(0));
        let calls = Arc::new(AtomicU64::new(0));
        let (s, c) = (Arc::clone(&seen), Arc::clone(&calls));
        let options = ExportOptions::new(format).progress(move |n| {
            s.store(n, Ordering::SeqCst);
            c.fetch_add(1, Ordering::SeqCst);
        });
        let file = export(&store, &options);
        assert_eq!(seen.load(Ordering::SeqCst), 600);
        assert_eq!(calls.load(Ordering::SeqCst), 600 / 256 + 1);

        let read = Arc::new(AtomicU64::new(0));
        let r = Arc::clone(&read);
        let target = common::open(&dir.path().join(format!("t-{format:?}")));
        let options = ImportOptions::new(format, ImportMode::Restore)
            .progress(move |n| r.store(n, Ordering::SeqCst));
        let report = snapshot::import(&target, file.as_slice(), &options).unwrap();
        assert_eq!(report.records, 600);
        assert_eq!(read.load(Ordering::SeqCst), 600);
    }

    struct Broken(usize);
    impl Write for Broken {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 < buf.len() {
                return Err(std::io::Error::other("disk full"));
            }
            self.0 -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let err =
        snapshot::export(&store, Broken(1000), &ExportOptions::new(Format::Json)).unwrap_err();
    assert!(
        matches!(err, Error::SnapshotIo { op: "write", .. }),
        "{err}"
    );
    assert_eq!(err.to_string(), "cannot write the snapshot stream");
}

#[test]
fn large_and_deep_values_round_trip() {
    let dir = common::store_dir();
    let store = common::open(&dir.path().join("source"));
    store.put("big", "text", &"é🎉x".repeat(200_000)).unwrap();
    // Nesting as deep as the store takes: arrays, and maps with integer keys
    // (three JSON levels per MessagePack level).
    let mut deepest = 0;
    for depth in (200..400).rev() {
        let mut bytes = vec![0x91u8; depth];
        bytes.push(0xc0);
        if let Ok(raw) = RawValue::from_msgpack(bytes) {
            deepest = depth;
            store.put_raw("deep", "arrays", raw).unwrap();
            let mut bytes = Vec::new();
            for _ in 0..depth {
                bytes.extend_from_slice(&[0x81, 0x01]);
            }
            bytes.push(0xc0);
            store
                .put_raw(
                    "deep",
                    "int-keyed-maps",
                    RawValue::from_msgpack(bytes).unwrap(),
                )
                .unwrap();
            break;
        }
    }
    assert!(deepest >= 255, "the store takes {deepest} levels");
    for format in FORMATS {
        let file = export(&store, &ExportOptions::new(format));
        let copy = common::open(&dir.path().join(format!("copy-{format:?}")));
        let report = snapshot::import(
            &copy,
            file.as_slice(),
            &ImportOptions::new(format, ImportMode::Restore),
        )
        .unwrap();
        assert_eq!(report.records, 3);
        assert_eq!(contents(&copy), contents(&store), "{format:?}");
        assert_eq!(export(&copy, &ExportOptions::new(format)), file);
    }
    // One level more than the store takes is refused on import, with its place.
    let mut json = String::from(
        "{\"format\": \"statelog-snapshot\", \"version\": 1, \"revision\": 1, \"time\": \
         \"2026-01-02T03:04:05Z\", \"namespaces\": {\"d\": {\"k\": {\"version\": 1, \
         \"create_revision\": 1, \"mod_revision\": 1, \"updated_at\": \"2026-01-02T03:04:05Z\", \
         \"value\": ",
    );
    json.push_str(&"[".repeat(deepest + 1));
    json.push_str("null");
    json.push_str(&"]".repeat(deepest + 1));
    json.push_str("}}}}");
    let err = snapshot::read(json.as_bytes(), Format::Json).unwrap_err();
    assert!(err.to_string().contains("nests deeper"), "{err}");
}

#[test]
fn format_names_and_extensions() {
    for format in FORMATS {
        let back = Format::from_extension(format.extension()).unwrap();
        if format == Format::JsonCompact {
            assert_eq!(back, Format::Json);
        } else {
            assert_eq!(back, format);
        }
    }
    assert_eq!(Format::from_extension("NDJSON"), Some(Format::JsonLines));
}

#[test]
fn restore_keeps_the_commit_time_of_the_revision() {
    let dir = common::store_dir();
    let store = common::open_with(&dir.path().join("s"), Options::default());
    store.put("a", "b", &1).unwrap();
    let time = store.snapshot().unwrap().time().unwrap();
    assert!(time > statelog::Timestamp::EPOCH);
    let file = export(&store, &ExportOptions::new(Format::JsonCompact));
    assert!(text(&file).contains(&format!("\"time\":\"{time}\"")));
    let copy = common::open(&dir.path().join("c"));
    let _ = snapshot::import(
        &copy,
        file.as_slice(),
        &ImportOptions::new(Format::Json, ImportMode::Restore),
    )
    .unwrap();
    assert_eq!(copy.snapshot().unwrap().time().unwrap(), time);
}

/// Issue: a hand edit of a Markdown summary cell was ignored (`written: 0`).
/// The table is generated from the sections: a cell that says something its
/// section does not is refused with its line, in a merge and in a restore; a
/// table left stale by an edit of the section is fine.
#[test]
fn an_edited_summary_cell_is_refused_never_ignored() {
    let dir = common::store_dir();
    let store = common::open(dir.path());
    store
        .put("tasks", "a", &json!({"status": "todo", "n": 3}))
        .unwrap();
    store.put("tasks", "b", &json!("plain")).unwrap();
    let md = text(&export(&store, &ExportOptions::new(Format::Markdown)));
    let row = md.lines().position(|l| l.starts_with("| a |")).unwrap() + 1;
    for (edited, cell) in [
        (md.replacen("| todo |", "| done |", 1), "\"status\""),
        (md.replacen("| 3 |", "| 4 |", 1), "\"n\""),
        (md.replacen("| a | 1 |", "| a | 7 |", 1), "\"version\""),
        (md.replacen("| plain |", "| fancy |", 1), "\"(value)\""),
    ] {
        assert_ne!(edited, md);
        let before = contents(&store);
        for mode in [
            CHECKED,
            ImportMode::Merge {
                check_versions: false,
                skip_conflicts: false,
            },
        ] {
            let err = snapshot::import(
                &store,
                edited.as_bytes(),
                &ImportOptions::new(Format::Markdown, mode),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("summary table") && err.contains(cell), "{err}");
            if cell != "\"(value)\"" {
                assert!(err.contains(&format!("line {row}")), "{err}");
            }
        }
        assert_eq!(
            contents(&store),
            before,
            "a refused import changed the store"
        );
        let fresh = common::open(&dir.path().join(format!("fresh-{}", cell.len())));
        let err = snapshot::import(
            &fresh,
            edited.as_bytes(),
            &ImportOptions::new(Format::Markdown, ImportMode::Restore),
        )
        .unwrap_err();
        assert!(err.to_string().contains("summary table"), "{err}");
        assert_eq!(fresh.revision(), 0);
    }
    // An edit of the section leaves the table stale: that is applied.
    let edited = md.replacen("\"status\": \"todo\"", "\"status\": \"doing\"", 1);
    let report = snapshot::import(
        &store,
        edited.as_bytes(),
        &ImportOptions::new(Format::Markdown, CHECKED),
    )
    .unwrap();
    assert_eq!((report.written, report.applied), (1, true));
    let a: serde_json::Value = store.get("tasks", "a").unwrap().unwrap().value;
    assert_eq!(a["status"], "doing");
}
