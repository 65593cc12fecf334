//! HTML for dashboards: one self-contained page to open in a browser, with a
//! table per namespace that can be filtered and sorted without a server.
//!
//! ```html
//! <!DOCTYPE html>
//! <html lang="en">
//! <head>… <title>Snapshot at revision 42 (2026-01-02 03:04:05Z)</title>
//! <script>document.documentElement.className = "js";</script><style>…</style></head>
//! <body>
//! <header><h1>…</h1><p>…</p><nav>…one link per namespace…</nav></header>
//! <div id="tools" hidden>…the filter box…</div>
//! <main>
//! <section id="ns-tasks">
//! <h2>tasks</h2>
//! <p class="count">1 record.</p>
//! <table>
//! <thead><tr><th>key</th><th class="n">version</th><th>updated</th><th>status</th>…<th class="v">value</th></tr></thead>
//! <tbody>
//! <tr><td>t1</td><td class="n" title="created at revision 9, modified at revision 17">3</td>
//! <td class="t" title="2026-01-02T03:04:05.000006Z">2026-01-02 03:04:05Z</td><td>running</td>…
//! <td class="v"><pre>{ pretty JSON }</pre></td></tr>
//! </tbody>
//! </table>
//! </section>
//! </main>
//! <script>…filter, sort, pages…</script>
//! </body>
//! </html>
//! ```
//!
//! The columns are the Markdown summary table's (key, version, updated, then
//! the values' scalar fields or the named ones), and a last column holds the
//! whole value as pretty JSON (the snapshot mapping). With scripts on, that
//! cell is folded to a "value" toggle; with scripts off it shows the JSON.
//! (Not `<details>`: each one costs the browser a shadow tree, which more
//! than doubled the time to load 100,000 rows.)
//!
//! Rules that keep the page safe and usable:
//! - User data (namespaces, keys, column names, values) appears only as text
//!   content, escaped (`&`, `<`, `>`, `"`); never in an attribute, a script or
//!   a style. Anchors are derived from namespaces by [`anchor`], which keeps
//!   only ASCII letters, digits, `-` and `.`. Control characters never reach
//!   the page: cells show U+FFFD, the JSON has `\u` escapes.
//! - The scripts and the style are constants: the script reads the tables
//!   from the DOM and never builds HTML from text. A Content-Security-Policy
//!   refuses every load from elsewhere, so the file works offline.
//! - Every record is a row in the HTML: with scripts off, every row is
//!   displayed and the filter (hidden until the script shows it) is missing.
//!   With scripts on, the head's one line marks the page before any row is
//!   parsed, the style then displays only rows the table script marks `on`,
//!   and each table shows its first 1,000 matching rows ("Show more", "Show
//!   all"): a browser lays out a page of rows, not 100,000.
//! - The output is a pure function of the state (no clock, no random ids), and
//!   it streams: each namespace is read twice (columns, then rows), one record
//!   rendered at a time.
//!
//! HTML is export-only: reading it back is refused.

use std::fmt::Write as _;
use std::io::Read;

use rmpv::Value;

use super::markdown::{Column, Markdown, display, is_scalar, short_time};
use super::source::Source;
use super::{Adapter, Columns, Header, Output, Parsed, SnapshotRecord, decode_value, write_json};
use crate::error::{Error, Result};

/// Longest text shown in a table cell, in characters (the whole value is in
/// the value cell).
const CELL_CHARS: usize = 200;

pub(crate) struct Html {
    pub columns: Columns,
}

impl Adapter for Html {
    fn write(&self, source: &dyn Source, out: &mut Output<'_>) -> Result<()> {
        let header = source.header();
        let table = Markdown {
            columns: self.columns.clone(),
        };
        let mut namespaces = Vec::new();
        for namespace in source.namespaces()? {
            let (count, columns) = table.scan(source, &namespace)?;
            if count > 0 {
                namespaces.push((namespace, count, columns));
            }
        }
        let total: u64 = namespaces.iter().map(|(_, count, _)| count).sum();
        out.write(page_head(header, total, namespaces.len() as u64).as_bytes())?;
        let mut text = String::new();
        if namespaces.is_empty() {
            out.write(b"<p>No records.</p>\n</header>\n<main>\n")?;
        } else {
            text.push_str("<nav><ul>\n");
            for (namespace, count, _) in &namespaces {
                let _ = write!(text, "<li><a href=\"#{}\">", anchor(namespace));
                push_escaped(&mut text, namespace);
                let _ = writeln!(text, "</a> ({count})</li>");
            }
            text.push_str("</ul></nav>\n</header>\n");
            text.push_str(TOOLS);
            text.push_str("<main>\n");
            out.write(text.as_bytes())?;
        }
        for (namespace, count, columns) in &namespaces {
            out.namespace_done();
            write_table_head(namespace, *count, columns, out)?;
            for record in source.records(namespace)? {
                text.clear();
                push_row(&mut text, &record?, columns)?;
                out.write(text.as_bytes())?;
                out.record_done();
            }
            out.write(b"</tbody>\n</table>\n</section>\n")?;
        }
        out.write(b"</main>\n")?;
        if !namespaces.is_empty() {
            out.write(b"<script>\n")?;
            out.write(SCRIPT.as_bytes())?;
            out.write(b"</script>\n")?;
        }
        out.write(b"</body>\n</html>\n")
    }

    fn read(
        &self,
        _input: &mut dyn Read,
        _sink: &mut dyn FnMut(Parsed) -> Result<()>,
    ) -> Result<Header> {
        Err(Error::InvalidOption {
            name: "format",
            reason: "HTML is an export-only format: statelog writes it for people and does not \
                     read it back; import a JSON, JSON Lines or Markdown export of the store \
                     instead"
                .to_owned(),
        })
    }
}

/// The document up to the namespace list: head, title, header paragraph.
fn page_head(header: Header, records: u64, namespaces: u64) -> String {
    let short = short_time(header.time);
    format!(
        "<!DOCTYPE html>\n\
         <html lang=\"en\">\n\
         <head>\n\
         <meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n\
         <meta name=\"generator\" content=\"statelog\">\n\
         <title>Snapshot at revision {revision} ({short})</title>\n\
         <script>{HEAD_SCRIPT}</script>\n\
         <style>\n{STYLE}</style>\n\
         </head>\n\
         <body>\n\
         <header>\n\
         <h1>Snapshot at revision {revision}</h1>\n\
         <p>Revision {revision}, committed at <time datetime=\"{time}\">{short}</time>: \
         {records_text} in {namespaces_text}.</p>\n",
        revision = header.revision,
        time = header.time,
        records_text = plural(records, "record", "records"),
        namespaces_text = plural(namespaces, "namespace", "namespaces"),
    )
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn write_table_head(
    namespace: &str,
    count: u64,
    columns: &[Column],
    out: &mut Output<'_>,
) -> Result<()> {
    let mut text = String::new();
    let _ = write!(text, "<section id=\"{}\">\n<h2>", anchor(namespace));
    push_escaped(&mut text, namespace);
    let _ = write!(
        text,
        "</h2>\n<p class=\"count\">{}.</p>\n<table>\n<thead><tr><th>key</th>\
         <th class=\"n\">version</th><th>updated</th>",
        plural(count, "record", "records")
    );
    for column in columns {
        text.push_str("<th>");
        match column {
            Column::Value => text.push_str("(value)"),
            Column::Field(name) => push_cell(&mut text, name),
        }
        text.push_str("</th>");
    }
    text.push_str("<th class=\"v\">value</th></tr></thead>\n<tbody>\n");
    out.write(text.as_bytes())
}

/// Appends one record's row.
fn push_row(text: &mut String, record: &SnapshotRecord, columns: &[Column]) -> Result<()> {
    let value = decode_value(record)?;
    let m = &record.meta;
    text.push_str("<tr><td>");
    push_escaped(text, &record.key);
    let _ = write!(
        text,
        "</td><td class=\"n\" title=\"created at revision {}, modified at revision {}\">{}</td>\
         <td class=\"t\" title=\"{}\">{}</td>",
        m.create_revision,
        m.mod_revision,
        m.version,
        m.updated_at,
        short_time(m.updated_at)
    );
    for column in columns {
        let shown = match (column, &value) {
            (Column::Value, v) if is_scalar(v) => Some(v),
            (Column::Field(name), Value::Map(entries)) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(name.as_str()))
                .map(|(_, v)| v),
            _ => None,
        };
        match shown {
            Some(v) => {
                text.push_str(if is_number(v) {
                    "<td class=\"n\">"
                } else {
                    "<td>"
                });
                push_cell(text, &display(record, v)?);
                text.push_str("</td>");
            }
            None => text.push_str("<td></td>"),
        }
    }
    let mut json = Vec::new();
    write_json(record, &value, true, 0, &mut json)?;
    text.push_str("<td class=\"v\"><pre>");
    push_escaped(text, &escape_controls(&String::from_utf8_lossy(&json)));
    text.push_str("</pre></td></tr>\n");
    Ok(())
}

/// JSON text with DEL and the C1 control characters (which the snapshot
/// mapping writes as they are, and HTML counts as errors) as `\u` escapes.
/// They can only be inside strings, where the escape means the same.
fn escape_controls(json: &str) -> std::borrow::Cow<'_, str> {
    let escaped = |c: char| c.is_control() && c != '\n';
    if !json.chars().any(escaped) {
        return json.into();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if escaped(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// Numbers the script sorts as numbers (finite ones).
fn is_number(v: &Value) -> bool {
    match v {
        Value::Integer(_) => true,
        Value::F64(f) => f.is_finite(),
        Value::F32(f) => f.is_finite(),
        _ => false,
    }
}

/// Appends a cell's text: control characters other than tab and line feed
/// become U+FFFD (HTML would turn a carriage return into a line feed and
/// refuses NUL), cut at [`CELL_CHARS`], escaped.
fn push_cell(out: &mut String, text: &str) {
    for (i, c) in text.chars().enumerate() {
        if i == CELL_CHARS {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// Appends `text` escaped for HTML text content and double-quoted attribute
/// values.
fn push_escaped(out: &mut String, text: &str) {
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        let entity = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => continue,
        };
        out.push_str(&text[start..i]);
        out.push_str(entity);
        start = i + 1;
    }
    out.push_str(&text[start..]);
}

/// The element id of a namespace's section: `ns-` and the namespace with every
/// byte other than an ASCII letter, digit, `-` or `.` written as `_` and two
/// hex digits. One-to-one, and safe in an attribute and a URL fragment.
fn anchor(namespace: &str) -> String {
    let mut id = String::with_capacity(namespace.len() + 3);
    id.push_str("ns-");
    for b in namespace.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
            id.push(char::from(b));
        } else {
            let _ = write!(id, "_{b:02x}");
        }
    }
    id
}

/// The head's script: marks the page as scripted before any row is parsed,
/// so that the style displays only the rows the table script shows.
const HEAD_SCRIPT: &str = "document.documentElement.className = \"js\";";

/// The filter box, shown by the script.
const TOOLS: &str = "<div id=\"tools\" hidden><label>Filter \
     <input type=\"search\" id=\"filter\" autocomplete=\"off\" \
     placeholder=\"words in any column or value\"></label> \
     <output id=\"matches\" for=\"filter\"></output></div>\n";

/// The page's style. ASCII only, no `</`. With the script on (class `js` on
/// the root, set in the head before any row is parsed), a row is displayed
/// only once the script marks it `on`: the browser lays out one page of rows,
/// not the whole table.
pub(crate) const STYLE: &str = r#":root { color-scheme: light dark; font: 14px/1.45 system-ui, sans-serif; }
body { margin: 0; padding: 0 1.5em 2em; }
h1 { font-size: 1.4em; margin: .6em 0 .2em; }
h2 { font-size: 1.15em; margin: 1.2em 0 .2em; }
nav ul { list-style: none; padding: 0; margin: .4em 0; display: flex; flex-wrap: wrap; gap: .2em 1.4em; }
#tools { position: sticky; top: 0; z-index: 2; height: 2.6em; display: flex; align-items: center; background: Canvas; }
#tools[hidden] { display: none; }
#filter { width: 26em; max-width: 60vw; font: inherit; padding: .1em .4em; }
#matches { margin-left: .8em; }
.count { margin: 0 0 .4em; color: GrayText; }
table { border-collapse: collapse; }
th, td { text-align: left; vertical-align: top; padding: .2em .7em .2em 0; border-bottom: 1px solid #8884; }
th { position: sticky; top: 0; z-index: 1; background: Canvas; }
.js th { top: 2.6em; }
td { max-width: 24em; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
td:first-child { font-family: ui-monospace, monospace; }
.n { text-align: right; font-variant-numeric: tabular-nums; }
td.v { max-width: none; overflow: visible; white-space: normal; }
.js main tbody tr:not(.on) { display: none; }
th button { all: unset; cursor: pointer; font-weight: bold; }
th button:focus-visible, .pager button:focus-visible { outline: 2px solid Highlight; }
th[aria-sort=ascending] button::after { content: " \25B2"; }
th[aria-sort=descending] button::after { content: " \25BC"; }
.pager { margin: .5em 0; }
.pager button { font: inherit; margin-left: .6em; }
pre { margin: 0 0 .4em; min-width: 36ch; max-width: 80ch; white-space: pre-wrap; overflow-wrap: anywhere; }
.js td.v pre { display: none; margin-top: .3em; }
.js td.v.open pre { display: block; }
.js td.v::before { content: "value \25B8"; color: LinkText; cursor: pointer; }
.js td.v.open::before { content: "value \25BE"; }
.js td.v:focus-visible { outline: 2px solid Highlight; }
tbody tr:hover { background: #8881; }
"#;

/// The page's script: filter, sort and show a page of rows at a time. ASCII
/// only, no `</`, no data: it reads the tables from the DOM.
const SCRIPT: &str = r#""use strict";
(() => {
try {
  // Rows each table shows at first; "Show more" adds as many.
  const PAGE = 1000;
  const records = (n) => n + (n === 1 ? " record" : " records");
  const filter = document.getElementById("filter");
  const matches = document.getElementById("matches");
  let words = [];

  const tables = [...document.querySelectorAll("main table")].map((table) => {
    const rows = [...table.tBodies[0].rows];
    const t = {
      table,
      body: table.tBodies[0],
      rows,
      order: rows.map((_, i) => i),
      texts: null,
      hits: null,
      keys: [],
      limit: PAGE,
      shown: [],
      count: table.parentElement.querySelector(".count"),
      pager: document.createElement("p"),
    };
    t.pager.className = "pager";
    const more = document.createElement("button");
    more.type = "button";
    more.textContent = "Show " + PAGE + " more";
    more.addEventListener("click", () => { t.limit += PAGE; render(t); });
    const all = document.createElement("button");
    all.type = "button";
    all.textContent = "Show all";
    all.addEventListener("click", () => { t.limit = Infinity; render(t); });
    t.pager.append(more, all);
    table.after(t.pager);
    return t;
  });

  // Shows the first `limit` rows, in the current order, that match. Only
  // rows shown move: the others are not displayed, wherever they are.
  const render = (t) => {
    for (const row of t.shown) row.classList.remove("on");
    t.shown = [];
    let matching = 0;
    for (const i of t.order) {
      if (t.hits !== null && !t.hits[i]) continue;
      matching += 1;
      if (t.shown.length < t.limit) t.shown.push(t.rows[i]);
    }
    const moved = document.createDocumentFragment();
    for (const row of t.shown) {
      row.classList.add("on");
      row.lastElementChild.tabIndex = 0;
      moved.appendChild(row);
    }
    t.body.prepend(moved);
    const total = records(t.rows.length);
    const head = words.length > 0 ? matching + " of " + total + " match" : total;
    const cut = t.shown.length < matching ? "; showing the first " + t.shown.length : "";
    t.count.textContent = head + cut + ".";
    t.pager.hidden = cut === "";
    return matching;
  };

  // Cells are found by walking siblings: `row.cells` costs far more on large
  // tables.
  const cellAt = (row, column) => {
    let cell = row.firstElementChild;
    for (let i = 0; i < column; i += 1) cell = cell.nextElementSibling;
    return cell;
  };

  // Filtering: every word must appear in the key, the time or the value (as
  // JSON).
  const textOf = (row) => {
    const key = row.firstElementChild;
    const time = key.nextElementSibling.nextElementSibling;
    const value = row.lastElementChild;
    return (key.textContent + "\n" + time.textContent + "\n" + value.textContent).toLowerCase();
  };
  const applyFilter = () => {
    words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    let matching = 0;
    let total = 0;
    for (const t of tables) {
      if (words.length === 0) {
        t.hits = null;
      } else {
        if (t.texts === null) t.texts = t.rows.map(textOf);
        t.hits = t.texts.map((text) => words.every((word) => text.includes(word)));
      }
      matching += render(t);
      total += t.rows.length;
    }
    matches.textContent = words.length > 0 ? matching + " of " + records(total) + " match" : "";
  };
  let pending = 0;
  filter.addEventListener("input", () => {
    clearTimeout(pending);
    pending = setTimeout(applyFilter, 80);
  });

  // Sorting: numbers before text, numbers by value, times by their full
  // text, empty cells last (first when descending); equal cells keep key
  // order.
  const sortKey = (cell) => {
    const text = cell.textContent;
    if (text === "") return [2, ""];
    if (cell.classList.contains("n")) return [0, Number(text)];
    if (cell.classList.contains("t")) return [1, cell.title];
    return [1, text];
  };
  const compare = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  const sortBy = (t, column, th) => {
    const ascending = th.getAttribute("aria-sort") !== "ascending";
    for (const other of t.table.tHead.rows[0].cells) other.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    t.keys[column] ??= t.rows.map((row) => sortKey(cellAt(row, column)));
    const keys = t.keys[column];
    const sign = ascending ? 1 : -1;
    t.order.sort((a, b) =>
      (keys[a][0] - keys[b][0] || compare(keys[a][1], keys[b][1])) * sign || a - b);
    render(t);
  };
  // A value cell opens and closes on a click (not one that ends selecting
  // text in it) or on Enter.
  const toggle = (event) => {
    const cell = event.target.closest("td.v");
    if (cell === null) return;
    if (event.type === "click" && !window.getSelection().isCollapsed) return;
    if (event.type === "keydown" && event.key !== "Enter") return;
    cell.classList.toggle("open");
  };
  for (const t of tables) {
    t.body.addEventListener("click", toggle);
    t.body.addEventListener("keydown", toggle);
    [...t.table.tHead.rows[0].cells].forEach((th, column) => {
      if (th.classList.contains("v")) return;
      const button = document.createElement("button");
      button.type = "button";
      button.append(...th.childNodes);
      th.append(button);
      button.addEventListener("click", () => sortBy(t, column, th));
    });
  }

  document.getElementById("tools").hidden = false;
  applyFilter();
} catch (e) {
  // Whatever failed, show every row as if scripts were off.
  document.documentElement.className = "";
  throw e;
}
})();
"#;

#[cfg(test)]
mod tests;
