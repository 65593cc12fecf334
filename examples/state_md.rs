//! A pipeline's task state, rendered to `STATE.md` for people and read back.
//!
//! Workers advance tasks through the store; `STATE.md` is rendered from one
//! consistent snapshot (a summary table per namespace, then a section per task
//! with its metadata and value). A person edits the file; the edit is merged
//! back with version checks, so an edit of a task that moved on meanwhile is
//! reported as a conflict instead of overwriting it. Finally the file restores
//! an identical store elsewhere.
//!
//! Run: `cargo run --example state_md [DIR]` (a temporary directory by default;
//! `STATE.md` is written there).

use serde::{Deserialize, Serialize};
use statelog::snapshot::{self, Columns, ExportOptions, Format, ImportMode, ImportOptions};
use statelog::{Options, Store};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Task {
    wave: u32,
    status: String,
    progress: u8,
    notes: String,
}

fn render(store: &Store, path: &std::path::Path) -> Result<String, Box<dyn std::error::Error>> {
    let options = ExportOptions::new(Format::Markdown).columns(Columns::Named(vec![
        "wave".into(),
        "status".into(),
        "progress".into(),
    ]));
    let mut file = Vec::new();
    snapshot::export(store, &mut file, &options)?;
    std::fs::write(path, &file)?;
    Ok(String::from_utf8_lossy(&file).into_owned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let root = std::env::args_os()
        .nth(1)
        .map_or_else(|| temp.path().to_owned(), std::path::PathBuf::from);
    let store = Store::open(root.join("state"), Options::default())?;

    // Three waves of tasks; parallel workers move them on.
    for (wave, id) in [(1, "fetch"), (1, "parse"), (2, "index"), (3, "publish")] {
        store.put(
            "tasks",
            id,
            &Task {
                wave,
                status: "queued".into(),
                ..Task::default()
            },
        )?;
    }
    std::thread::scope(|s| {
        for (id, progress) in [("fetch", 100), ("parse", 40)] {
            let store = store.clone();
            s.spawn(move || {
                store.update("tasks", id, |t: Option<Task>| -> statelog::Result<Task> {
                    let mut t = t.unwrap_or_default();
                    t.progress = progress;
                    t.status = if progress == 100 { "done" } else { "running" }.into();
                    Ok(t)
                })
            });
        }
    });

    let state_md = root.join("STATE.md");
    let text = render(&store, &state_md)?;
    println!("{text}");

    // A person marks `publish` as skipped, with a note. Fields appear in the
    // struct's order; the `|` stays as it is in JSON and is escaped in the table.
    let edited = text.replacen(
        "\"wave\": 3,\n  \"status\": \"queued\",\n  \"progress\": 0,\n  \"notes\": \"\"",
        "\"wave\": 3,\n  \"status\": \"skipped\",\n  \"progress\": 0,\n  \"notes\": \"not this release | see review\"",
        1,
    );
    assert_ne!(edited, text, "the edit must change the file");

    // Meanwhile the pipeline moves `parse` on, so the file is stale for it.
    store.update(
        "tasks",
        "parse",
        |t: Option<Task>| -> statelog::Result<Task> {
            let mut t = t.unwrap_or_default();
            t.progress = 80;
            Ok(t)
        },
    )?;

    // The file is stale for `parse`: merging it would undo the worker's update.
    // By default any stale record stops the whole import and is reported.
    let strict = ImportMode::Merge {
        check_versions: true,
        skip_conflicts: false,
    };
    let report = snapshot::import(
        &store,
        edited.as_bytes(),
        &ImportOptions::new(Format::Markdown, strict),
    )?;
    println!(
        "strict merge: applied {}, conflicts {:?}",
        report.applied, report.conflicts
    );
    assert!(!report.applied);
    assert_eq!(report.conflicts.len(), 1);
    assert_eq!(
        (
            report.conflicts[0].key.as_str(),
            report.conflicts[0].expected,
            report.conflicts[0].actual
        ),
        ("parse", 2, 3)
    );

    // Asked to, it applies what is not stale (the person's edit) in one commit
    // and still reports the stale record, which it leaves alone.
    let lenient = ImportMode::Merge {
        check_versions: true,
        skip_conflicts: true,
    };
    let report = snapshot::import(
        &store,
        edited.as_bytes(),
        &ImportOptions::new(Format::Markdown, lenient),
    )?;
    println!(
        "merge skipping conflicts: written {}, unchanged {}, conflicts {}",
        report.written,
        report.unchanged,
        report.conflicts.len()
    );
    assert_eq!(
        (report.written, report.unchanged, report.conflicts.len()),
        (1, 2, 1)
    );
    let publish: Task = store.get("tasks", "publish")?.expect("publish").value;
    assert_eq!(publish.status, "skipped");
    let parse: Task = store.get("tasks", "parse")?.expect("parse").value;
    assert_eq!(parse.progress, 80, "the worker's update survived");

    // Read back exactly: STATE.md, re-rendered, restores an identical store.
    let text = render(&store, &state_md)?;
    let copy = Store::open(root.join("copy"), Options::default())?;
    let restore = ImportOptions::new(Format::Markdown, ImportMode::Restore);
    let report = snapshot::import(&copy, text.as_bytes(), &restore)?;
    assert_eq!(report.records, 4);
    assert_eq!(
        copy.get_raw("tasks", "parse")?,
        store.get_raw("tasks", "parse")?
    );
    let mut again = Vec::new();
    snapshot::export(
        &copy,
        &mut again,
        &ExportOptions::new(Format::Markdown).columns(Columns::Named(vec![
            "wave".into(),
            "status".into(),
            "progress".into(),
        ])),
    )?;
    assert_eq!(
        again,
        text.as_bytes(),
        "the restored store renders the same STATE.md"
    );
    println!(
        "restored {} records at revision {}; STATE.md is at {}",
        report.records,
        copy.revision(),
        state_md.display()
    );
    Ok(())
}
