//! Snapshots, backups, restore and stats: the store's file-level operations,
//! with their reports as plain dicts (the shapes of the command line's
//! `--json` output).

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use statelog::backup::{self, RestoreOptions, Until};
use statelog::snapshot::{
    self, Columns, ExportOptions, Format, ImportMode, ImportOptions, KeyNormalizer, LegacyOptions,
};
use statelog::{Error, Store, Timestamp};

use crate::errors::{dict, py_obj};
use crate::store::run;
use crate::types::utc_datetime;

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A format by name ("json", "json-compact", "jsonl", "md"), else from the
/// file's extension, else JSON.
pub(crate) fn format(name: Option<&str>, path: Option<&Path>) -> statelog::Result<Format> {
    let from_name = |name: &str| match name {
        "json" => Some(Format::Json),
        "json-compact" => Some(Format::JsonCompact),
        "jsonl" => Some(Format::JsonLines),
        "md" | "markdown" => Some(Format::Markdown),
        _ => None,
    };
    match name {
        Some(name) => from_name(name).ok_or_else(|| Error::InvalidOption {
            name: "format",
            reason: format!("{name:?} is not one of \"json\", \"json-compact\", \"jsonl\", \"md\""),
        }),
        None => Ok(path
            .and_then(|p| p.extension())
            .and_then(|e| Format::from_extension(&e.to_string_lossy()))
            .unwrap_or(Format::Json)),
    }
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Json => "json",
        Format::JsonCompact => "json-compact",
        Format::JsonLines => "jsonl",
        _ => "md",
    }
}

pub(crate) fn export_options(
    format: Format,
    namespaces: Option<Vec<String>>,
    prefix: Option<String>,
    columns: Option<Vec<String>>,
) -> ExportOptions {
    let mut options = ExportOptions::new(format);
    if let Some(namespaces) = namespaces {
        options = options.namespaces(namespaces);
    }
    if let Some(prefix) = prefix {
        options = options.key_prefix(prefix);
    }
    if let Some(columns) = columns {
        options = options.columns(Columns::Named(columns));
    }
    options
}

/// Exports into `path` atomically: a temporary file beside it, synced, then
/// renamed over it, so a reader sees the old file or the whole new one.
pub(crate) fn export_file(
    store: &Store,
    path: &Path,
    options: &ExportOptions,
) -> statelog::Result<snapshot::ExportSummary> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "export".to_owned(), |n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let io = |op: &'static str, p: &Path| {
        let p = p.to_owned();
        move |source| Error::Io {
            op,
            path: p,
            source,
        }
    };
    let written = (|| {
        let mut file = File::create(&temp).map_err(io("create", &temp))?;
        let summary = snapshot::export(store, &mut file, options)?;
        file.flush().map_err(io("write", &temp))?;
        file.sync_all().map_err(io("sync", &temp))?;
        std::fs::rename(&temp, path).map_err(io("rename the export to", path))?;
        if let Ok(d) = File::open(&dir) {
            d.sync_all().map_err(io("sync", &dir))?;
        }
        Ok(summary)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

pub(crate) fn export_report(
    py: Python<'_>,
    summary: &snapshot::ExportSummary,
    format: Format,
    path: Option<&Path>,
) -> PyResult<Py<PyDict>> {
    let mut items = vec![
        ("format", py_obj(py, format_name(format))),
        ("revision", py_obj(py, summary.header.revision)),
        ("namespaces", py_obj(py, summary.namespaces)),
        ("records", py_obj(py, summary.records)),
        ("bytes", py_obj(py, summary.bytes)),
    ];
    if let Some(path) = path {
        items.push(("out", py_obj(py, path_text(path))));
    }
    Ok(dict(py, &items)?.unbind())
}

pub(crate) fn import_mode(
    mode: &str,
    check_versions: bool,
    skip_conflicts: bool,
) -> statelog::Result<ImportMode> {
    match mode {
        "merge" => Ok(ImportMode::Merge {
            check_versions,
            skip_conflicts,
        }),
        "restore" => Ok(ImportMode::Restore),
        other => Err(Error::InvalidOption {
            name: "mode",
            reason: format!("{other:?} is neither \"merge\" nor \"restore\""),
        }),
    }
}

pub(crate) fn import_file(
    store: &Store,
    path: &Path,
    options: &ImportOptions,
) -> statelog::Result<snapshot::ImportReport> {
    let file = File::open(path).map_err(|source| Error::Io {
        op: "open",
        path: path.to_owned(),
        source,
    })?;
    snapshot::import(store, BufReader::new(file), options)
}

pub(crate) fn import_report(
    py: Python<'_>,
    report: &snapshot::ImportReport,
    format: Format,
    mode: &str,
) -> PyResult<Py<PyDict>> {
    let conflicts = PyList::empty(py);
    for c in &report.conflicts {
        conflicts.append(dict(
            py,
            &[
                ("namespace", py_obj(py, &c.namespace)),
                ("key", py_obj(py, &c.key)),
                ("expected", py_obj(py, c.expected)),
                ("actual", py_obj(py, c.actual)),
            ],
        )?)?;
    }
    Ok(dict(
        py,
        &[
            ("format", py_obj(py, format_name(format))),
            ("mode", py_obj(py, mode)),
            ("records", py_obj(py, report.records)),
            ("written", py_obj(py, report.written)),
            ("unchanged", py_obj(py, report.unchanged)),
            ("revision", py_obj(py, report.revision)),
            ("applied", py_obj(py, report.applied)),
            ("conflicts", conflicts.into_any().unbind()),
        ],
    )?
    .unbind())
}

/// `import_legacy`: a JSON object of objects into one namespace.
pub(crate) fn import_legacy(
    py: Python<'_>,
    store: &Store,
    path: &Path,
    namespace: &str,
    normalize: &[String],
    merge_collisions: bool,
) -> PyResult<Py<PyDict>> {
    let mut normalizer = KeyNormalizer::new();
    for step in normalize {
        normalizer = match step.as_str() {
            "lower" => normalizer.lowercase(),
            "strip-www" => normalizer.strip_www(),
            "dots-to-hyphens" => normalizer.dots_to_hyphens(),
            other => {
                return Err(crate::errors::to_py(
                    py,
                    Error::InvalidOption {
                        name: "normalize",
                        reason: format!(
                            "{other:?} is not one of \"lower\", \"strip-www\", \"dots-to-hyphens\""
                        ),
                    },
                ));
            }
        };
    }
    let options = LegacyOptions::new(namespace)
        .normalizer(normalizer)
        .merge_collisions(merge_collisions);
    let report = run(py, || {
        let file = File::open(path).map_err(|source| Error::Io {
            op: "open",
            path: path.to_owned(),
            source,
        })?;
        snapshot::import_legacy(store, BufReader::new(file), &options)
    })?;
    let renamed = PyList::empty(py);
    for (from, to) in &report.renamed {
        renamed.append((from, to))?;
    }
    let collisions = PyList::empty(py);
    for c in &report.collisions {
        collisions.append(dict(
            py,
            &[
                ("key", py_obj(py, &c.key)),
                ("sources", py_obj(py, c.sources.clone())),
                ("clashing_fields", py_obj(py, c.clashing_fields.clone())),
            ],
        )?)?;
    }
    Ok(dict(
        py,
        &[
            ("namespace", py_obj(py, namespace)),
            ("members", py_obj(py, report.members)),
            ("records", py_obj(py, report.records)),
            ("written", py_obj(py, report.written)),
            ("unchanged", py_obj(py, report.unchanged)),
            ("renamed", renamed.into_any().unbind()),
            ("collisions", collisions.into_any().unbind()),
            ("revision", py_obj(py, report.revision)),
            ("applied", py_obj(py, report.applied)),
        ],
    )?
    .unbind())
}

fn time(py: Python<'_>, t: Timestamp) -> Py<PyAny> {
    utc_datetime(py, t.as_micros()).map_or_else(|_| py.None(), Bound::unbind)
}

pub(crate) fn backup_report(py: Python<'_>, report: &backup::BackupReport) -> PyResult<Py<PyDict>> {
    Ok(dict(
        py,
        &[
            ("destination", py_obj(py, path_text(&report.destination))),
            ("store_id", py_obj(py, &report.store_id)),
            ("full", py_obj(py, report.full)),
            ("base_revision", py_obj(py, report.base_revision)),
            ("revision", py_obj(py, report.revision)),
            ("time", time(py, report.time)),
            ("base_records", py_obj(py, report.base_records)),
            ("bytes_copied", py_obj(py, report.bytes_copied)),
            ("log_bytes_copied", py_obj(py, report.log_bytes_copied)),
            ("segments_copied", py_obj(py, report.segments_copied)),
            ("backup_bytes", py_obj(py, report.backup_bytes)),
            ("seconds", py_obj(py, report.duration.as_secs_f64())),
        ],
    )?
    .unbind())
}

pub(crate) fn stats_report(
    py: Python<'_>,
    store: &Store,
    stats: &statelog::Stats,
) -> PyResult<Py<PyDict>> {
    Ok(dict(
        py,
        &[
            ("path", py_obj(py, path_text(store.path()))),
            ("id", py_obj(py, store.id())),
            ("revision", py_obj(py, stats.revision)),
            ("checkpoint_revision", py_obj(py, stats.checkpoint_revision)),
            ("commits", py_obj(py, stats.commits)),
            ("conflicts", py_obj(py, stats.conflicts)),
            ("retries", py_obj(py, stats.retries)),
            ("batches", py_obj(py, stats.batches)),
            ("checkpoints", py_obj(py, stats.checkpoints)),
            ("replayed_on_open", py_obj(py, stats.replayed_on_open)),
            ("log_bytes", py_obj(py, stats.log_bytes)),
        ],
    )?
    .unbind())
}

/// Microseconds since the epoch of an aware `datetime`, exactly.
fn micros_of(py: Python<'_>, when: &Bound<'_, PyAny>) -> PyResult<i64> {
    let epoch = utc_datetime(py, 0)?;
    let delta = when.call_method1("__sub__", (epoch,))?;
    if delta.is_none() || delta.is(py.NotImplemented().bind(py)) {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "to_time must be a datetime with a time zone, or an RFC 3339 string",
        ));
    }
    let days: i64 = delta.getattr("days")?.extract()?;
    let seconds: i64 = delta.getattr("seconds")?.extract()?;
    let micros: i64 = delta.getattr("microseconds")?.extract()?;
    Ok((days * 86_400 + seconds) * 1_000_000 + micros)
}

/// `statelog.restore(backup, target, ...)`: a new store from a backup.
#[pyfunction]
#[pyo3(signature = (backup, target, *, to_revision = None, to_time = None, overwrite = false))]
pub(crate) fn restore(
    py: Python<'_>,
    backup: PathBuf,
    target: PathBuf,
    to_revision: Option<u64>,
    to_time: Option<&Bound<'_, PyAny>>,
    overwrite: bool,
) -> PyResult<Py<PyDict>> {
    let until = match (to_revision, to_time) {
        (Some(_), Some(_)) => {
            return Err(crate::errors::to_py(
                py,
                Error::InvalidOption {
                    name: "to_revision",
                    reason: "give to_revision or to_time, not both".to_owned(),
                },
            ));
        }
        (Some(revision), None) => Until::Revision(revision),
        (None, Some(when)) => {
            let at = match when.extract::<String>() {
                Ok(text) => text.parse::<Timestamp>().map_err(|e| {
                    crate::errors::to_py(
                        py,
                        Error::InvalidOption {
                            name: "to_time",
                            reason: e.to_string(),
                        },
                    )
                })?,
                Err(_) => Timestamp::from_micros(micros_of(py, when)?),
            };
            Until::Time(at)
        }
        (None, None) => Until::End,
    };
    let options = RestoreOptions::new().until(until).overwrite(overwrite);
    let report = run(py, || backup::restore(&backup, &target, &options))?;
    Ok(dict(
        py,
        &[
            ("target", py_obj(py, path_text(&report.target))),
            ("store_id", py_obj(py, &report.store_id)),
            ("backup_store_id", py_obj(py, &report.backup_store_id)),
            ("base_revision", py_obj(py, report.base_revision)),
            ("base_records", py_obj(py, report.base_records)),
            ("revision", py_obj(py, report.revision)),
            ("time", time(py, report.time)),
            ("commits_replayed", py_obj(py, report.commits_replayed)),
            (
                "replaced",
                py_obj(py, report.replaced.as_deref().map(path_text)),
            ),
            ("seconds", py_obj(py, report.duration.as_secs_f64())),
        ],
    )?
    .unbind())
}
