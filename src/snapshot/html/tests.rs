//! The HTML adapter: escaping, anchors, cells, page shape, determinism, the
//! refusal to read, and a property test that no key, namespace or value
//! breaks out of its element.

use proptest::prelude::*;
use serde_json::{Value as Json, json};

use super::super::{
    Columns, ExportOptions, Format, Header, ImportMode, ImportOptions, SnapshotRecord, import,
    read, write,
};
use super::{CELL_CHARS, HEAD_SCRIPT, SCRIPT, STYLE, anchor, push_cell, push_escaped};
use crate::error::Error;
use crate::store::Meta;
use crate::time::Timestamp;
use crate::value::RawValue;

fn escaped(text: &str) -> String {
    let mut out = String::new();
    push_escaped(&mut out, text);
    out
}

fn header() -> Header {
    Header {
        revision: 7,
        time: "2026-01-02T03:04:05.000006Z".parse().unwrap(),
    }
}

fn record(namespace: &str, key: &str, value: &Json, revision: u64) -> SnapshotRecord {
    SnapshotRecord {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        meta: Meta {
            version: revision,
            create_revision: 1,
            mod_revision: revision,
            updated_at: Timestamp::from_micros(1_767_323_045_000_000 + revision as i64),
        },
        value: RawValue::from_value(value).unwrap(),
    }
}

fn html(records: Vec<SnapshotRecord>, options: &ExportOptions) -> String {
    let mut out = Vec::new();
    write(header(), records, &mut out, options).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn text_escapes_markup_and_quotes_only() {
    assert_eq!(
        escaped("</script><!-- a & b \"c\" 'd' -->"),
        "&lt;/script&gt;&lt;!-- a &amp; b &quot;c&quot; 'd' --&gt;"
    );
    assert_eq!(escaped("&amp;"), "&amp;amp;");
    assert_eq!(escaped("日本/é/\u{2028}🎉"), "日本/é/\u{2028}🎉");
    assert_eq!(escaped(""), "");
}

#[test]
fn anchors_are_safe_and_one_to_one() {
    assert_eq!(anchor("tasks"), "ns-tasks");
    assert_eq!(anchor("build-2.x"), "ns-build-2.x");
    assert_eq!(anchor("a b/é"), "ns-a_20b_2f_c3_a9");
    // `_` is escaped too, so no two namespaces share an anchor.
    assert_eq!(anchor("_20"), "ns-_5f20");
    assert_ne!(anchor(" "), anchor("_20"));
}

#[test]
fn cells_lose_control_characters_and_shorten() {
    let mut out = String::new();
    push_cell(&mut out, "a\tb\nc\rd\0e\u{85}<");
    assert_eq!(out, "a\tb\nc\u{FFFD}d\u{FFFD}e\u{FFFD}&lt;");
    out.clear();
    push_cell(&mut out, &"é".repeat(CELL_CHARS + 5));
    assert_eq!(out, format!("{}…", "é".repeat(CELL_CHARS)));
    out.clear();
    push_cell(&mut out, &"x".repeat(CELL_CHARS));
    assert_eq!(out, "x".repeat(CELL_CHARS));
}

#[test]
fn a_page_has_a_table_per_namespace_with_the_markdown_columns() {
    // (serde_json's objects hold their fields in name order.)
    let records = vec![
        record(
            "tasks",
            "t1",
            &json!({"status": "running", "progress": 10}),
            3,
        ),
        record("tasks", "t2", &json!({"status": "done", "note": [1, 2]}), 4),
        record("counters", "hits", &json!(42), 5),
    ];
    let page = html(records.clone(), &ExportOptions::new(Format::Html));
    assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"));
    assert!(page.ends_with("</body>\n</html>\n"));
    assert!(page.contains("<title>Snapshot at revision 7 (2026-01-02 03:04:05Z)</title>"));
    assert!(page.contains(": 3 records in 2 namespaces.</p>"));
    assert!(page.contains("<li><a href=\"#ns-counters\">counters</a> (1)</li>"));
    // Namespaces in order, each with its count and its columns.
    let counters = page.find("<section id=\"ns-counters\">").unwrap();
    let tasks = page.find("<section id=\"ns-tasks\">").unwrap();
    assert!(counters < tasks);
    assert!(page.contains("<h2>tasks</h2>\n<p class=\"count\">2 records.</p>"));
    assert!(page.contains(
        "<thead><tr><th>key</th><th class=\"n\">version</th><th>updated</th><th>progress</th>\
         <th>status</th><th class=\"v\">value</th></tr></thead>"
    ));
    assert!(page.contains("<th>(value)</th>"));
    // A row: key, version (with its revisions), time, cells, the value.
    assert!(page.contains(
        "<tr><td>t1</td><td class=\"n\" title=\"created at revision 1, modified at revision 3\">\
         3</td><td class=\"t\" title=\"2026-01-02T03:04:05.000003Z\">2026-01-02 03:04:05Z</td>\
         <td class=\"n\">10</td><td>running</td><td class=\"v\"><pre>{\n  &quot;progress&quot;: 10,\n  &quot;status&quot;: \
         &quot;running&quot;\n}</pre></td></tr>\n"
    ));
    // A record without a column's field has an empty cell there.
    assert!(page.contains("<td></td><td>done</td>"));
    // With scripts off every row is displayed: the style hides rows only
    // under the class the head's script sets, and the filter is hidden.
    assert!(page.contains(&format!("<script>{HEAD_SCRIPT}</script>")));
    assert!(STYLE.contains(".js main tbody tr:not(.on) { display: none; }"));
    assert!(page.contains("<div id=\"tools\" hidden>"));
    assert_eq!(page.matches("<tr><td>").count(), 3);

    let named = ExportOptions::new(Format::Html)
        .columns(Columns::Named(vec!["progress".into(), "absent".into()]));
    let page = html(records, &named);
    assert!(
        page.contains("<th>updated</th><th>progress</th><th>absent</th><th class=\"v\">value</th>")
    );
    assert!(page.contains("<td class=\"n\">10</td><td></td><td class=\"v\">"));
}

#[test]
fn an_empty_snapshot_says_so_without_a_table_script() {
    let page = html(Vec::new(), &ExportOptions::new(Format::Html));
    assert!(page.contains("<p>No records.</p>"));
    assert!(!page.contains("<table"));
    assert!(!page.contains("id=\"tools\""));
    assert_eq!(page.matches("<script>").count(), 1);
}

#[test]
fn the_same_state_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::Store::open(dir.path().join("a"), Default::default()).unwrap();
    store
        .put("jobs", "j1", &json!({"status": "running", "n": 1.5}))
        .unwrap();
    store
        .put("jobs", "j2", &json!({"status": "<done>"}))
        .unwrap();
    store.put("other", "k", &json!("text")).unwrap();
    let export = |store: &crate::Store, format| {
        let mut out = Vec::new();
        super::super::export(store, &mut out, &ExportOptions::new(format)).unwrap();
        out
    };
    let first = export(&store, Format::Html);
    assert_eq!(first, export(&store, Format::Html));
    // A store restored from a JSON export (same versions, revisions and
    // times) renders the same page.
    let copy = crate::Store::open(dir.path().join("b"), Default::default()).unwrap();
    let json = export(&store, Format::Json);
    let restore = ImportOptions::new(Format::Json, ImportMode::Restore);
    let _ = import(&copy, json.as_slice(), &restore).unwrap();
    assert_eq!(export(&copy, Format::Html), first);
    // A write changes the page.
    store.put("jobs", "j1", &json!({"status": "done"})).unwrap();
    assert_ne!(export(&store, Format::Html), first);
}

#[test]
fn reading_html_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::Store::open(dir.path(), Default::default()).unwrap();
    store.put("jobs", "j1", &1).unwrap();
    let mut page = Vec::new();
    super::super::export(&store, &mut page, &ExportOptions::new(Format::Html)).unwrap();
    let merge = ImportMode::Merge {
        check_versions: false,
        skip_conflicts: false,
    };
    let err = import(
        &store,
        page.as_slice(),
        &ImportOptions::new(Format::Html, merge),
    );
    match err {
        Err(Error::InvalidOption { name, reason }) => {
            assert_eq!(name, "format");
            assert!(reason.contains("export-only"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(store.snapshot().unwrap().revision().unwrap(), 1);
    assert!(matches!(
        read(page.as_slice(), Format::Html),
        Err(Error::InvalidOption { .. })
    ));
    assert_eq!(Format::from_extension("HTM"), Some(Format::Html));
    assert_eq!(Format::Html.extension(), "html");
}

// ---------------------------------------------------------------------------
// A tolerant reading of the page: enough of an HTML tokenizer to see where
// every element starts and ends, for the markup this adapter writes.

/// Every element the page may hold.
const ELEMENTS: &[&str] = &[
    "!doctype", "html", "head", "meta", "title", "script", "style", "body", "header", "h1", "p",
    "time", "nav", "ul", "li", "a", "div", "label", "input", "output", "main", "section", "h2",
    "table", "thead", "tbody", "tr", "th", "td", "pre",
];

#[derive(Debug, PartialEq)]
enum Token {
    Open(String),
    Close(String),
    Text(String),
}

/// Splits a page into tags and text (script and style contents are text).
/// Panics on a `<` that starts no known element.
fn tokens(page: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut rest = page;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            out.push(Token::Text(rest.to_owned()));
            break;
        };
        if lt > 0 {
            out.push(Token::Text(rest[..lt].to_owned()));
        }
        rest = &rest[lt..];
        // The end of the tag, skipping quoted attribute values.
        let mut quote = None;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                match (quote, c) {
                    (None, '"' | '\'') => quote = Some(c),
                    (Some(q), c) if c == q => quote = None,
                    (None, '>') => return true,
                    _ => {}
                }
                false
            })
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("an unclosed tag at {rest:.40?}"));
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        let (closing, body) = match tag.strip_prefix('/') {
            Some(body) => (true, body),
            None => (false, tag),
        };
        let name = body
            .split(|c: char| c.is_ascii_whitespace())
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(ELEMENTS.contains(&name.as_str()), "unknown element <{tag}>");
        if closing {
            out.push(Token::Close(name));
            continue;
        }
        out.push(Token::Open(name.clone()));
        if name == "script" || name == "style" {
            let close = format!("</{name}>");
            let at = rest.find(&close).expect("raw text is closed");
            out.push(Token::Text(rest[..at].to_owned()));
            out.push(Token::Close(name));
            rest = &rest[at + close.len()..];
        }
    }
    out
}

/// Text content as a browser reads it: the four entities the adapter writes,
/// and no other `&`.
fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let (entity, c) = [
            ("&amp;", '&'),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
        ]
        .into_iter()
        .find(|(e, _)| rest.starts_with(e))
        .unwrap_or_else(|| panic!("a bare & at {rest:.20?}"));
        out.push(c);
        rest = &rest[entity.len()..];
    }
    out.push_str(rest);
    out
}

/// What a page holds, read back: per section its heading and, per row, the
/// text of each cell (the value cell's `pre`).
#[derive(Debug, Default)]
struct Read {
    sections: Vec<(String, Vec<Vec<String>>)>,
    scripts: Vec<String>,
    styles: Vec<String>,
}

fn read_back(page: &str) -> Read {
    let mut read = Read::default();
    let mut stack: Vec<String> = Vec::new();
    for token in tokens(page) {
        match token {
            Token::Open(name) => {
                match name.as_str() {
                    "section" => read.sections.push((String::new(), Vec::new())),
                    "tr" if stack.iter().any(|e| e == "tbody") => {
                        read.sections.last_mut().unwrap().1.push(Vec::new());
                    }
                    "td" => {
                        let section = read.sections.last_mut().unwrap();
                        section.1.last_mut().unwrap().push(String::new());
                    }
                    _ => {}
                }
                // Void elements have no end tag.
                if !["!doctype", "meta", "input"].contains(&name.as_str()) {
                    stack.push(name);
                }
            }
            Token::Close(name) => {
                assert_eq!(
                    stack.pop().as_deref(),
                    Some(name.as_str()),
                    "misnested </{name}>"
                );
            }
            Token::Text(text) => {
                let inner = stack.last().map(String::as_str);
                match inner {
                    Some("script") => read.scripts.push(text),
                    Some("style") => read.styles.push(text),
                    _ => {
                        assert!(!text.contains('>'), "a bare > in {text:?}");
                        let text = unescape(&text);
                        if inner == Some("h2") {
                            read.sections.last_mut().unwrap().0 = text;
                        } else if stack.iter().any(|e| e == "td") {
                            let section = read.sections.last_mut().unwrap();
                            let row = section.1.last_mut().unwrap();
                            row.last_mut().unwrap().push_str(&text);
                        }
                    }
                }
            }
        }
    }
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
    read
}

fn text_strategy() -> impl Strategy<Value = String> {
    // Markup, quotes, entities, line and paragraph separators, controls,
    // and plain and wide characters.
    let pieces = prop::sample::select(vec![
        "<",
        ">",
        "&",
        "\"",
        "'",
        "</script>",
        "<script>",
        "<!--",
        "-->",
        "&amp;",
        "&lt;",
        "</td>",
        "</pre>",
        "]]>",
        "\u{2028}",
        "\u{2029}",
        "\0",
        "\r",
        "\n",
        "\t",
        "\u{85}",
        "a",
        "Z",
        " ",
        "é",
        "日本",
        "🎉",
        "$",
        "`",
    ]);
    prop::collection::vec(pieces, 0..12).prop_map(|v| v.concat())
}

fn address_strategy() -> impl Strategy<Value = String> {
    // Namespaces and keys: no control characters, not empty.
    text_strategy()
        .prop_map(|s| s.chars().filter(|c| !c.is_control()).collect::<String>())
        .prop_filter("non-empty", |s| !s.is_empty())
}

fn value_strategy() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        text_strategy().prop_map(Json::from),
        any::<i32>().prop_map(Json::from),
        any::<bool>().prop_map(Json::from),
        Just(Json::Null),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::from),
            prop::collection::btree_map("[a-z<&\"]{1,4}", inner, 0..4)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the namespaces, keys and values, the page's elements are
    /// ours, its scripts and style are the constants, and every namespace,
    /// key and value reads back as it was.
    #[test]
    fn nothing_breaks_out_of_its_element(
        entries in prop::collection::btree_map(
            (address_strategy(), address_strategy()),
            value_strategy(),
            1..12,
        )
    ) {
        let records: Vec<SnapshotRecord> = entries
            .iter()
            .map(|((ns, key), value)| record(ns, key, value, 2))
            .collect();
        let page = html(records, &ExportOptions::new(Format::Html));
        prop_assert!(
            !page.chars().any(|c| c.is_control() && c != '\n' && c != '\t'),
            "a control character in the page"
        );
        let read = read_back(&page);
        prop_assert_eq!(read.scripts, vec![HEAD_SCRIPT.to_owned(), format!("\n{SCRIPT}")]);
        prop_assert_eq!(read.styles, vec![format!("\n{STYLE}")]);
        let mut expected: Vec<(String, Vec<(String, Json)>)> = Vec::new();
        for ((ns, key), value) in &entries {
            match expected.last_mut() {
                Some((last, rows)) if last == ns => rows.push((key.clone(), value.clone())),
                _ => expected.push((ns.clone(), vec![(key.clone(), value.clone())])),
            }
        }
        prop_assert_eq!(read.sections.len(), expected.len());
        for ((heading, rows), (ns, records)) in read.sections.iter().zip(&expected) {
            prop_assert_eq!(heading, ns);
            prop_assert_eq!(rows.len(), records.len());
            for (cells, (key, value)) in rows.iter().zip(records) {
                prop_assert_eq!(&cells[0], key);
                let shown: Json = serde_json::from_str(cells.last().unwrap()).unwrap();
                prop_assert_eq!(&shown, value);
            }
        }
    }
}
