"use strict";
// The web view: reads /api/v1/, follows /api/v1/watch, and builds the page
// with DOM calls and textContent only (never HTML from data).
(() => {
  const params = new URLSearchParams(location.search);
  const state = {
    ns: params.get("ns"),
    key: params.get("key"),
    sort: params.get("sort") || "key",
    q: params.get("q") || "",
    offset: Math.max(0, Number(params.get("offset")) || 0),
    limit: 100,
  };
  const $ = (id) => document.getElementById(id);
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  };
  const link = (query) => "/?" + new URLSearchParams(query).toString();
  const count = (n, one, many) => n.toLocaleString("en") + " " + (n === 1 ? one : many);
  const api = async (path) => {
    const r = await fetch("/api/v1/" + path, { credentials: "same-origin" });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || r.status + " " + r.statusText);
    return body;
  };
  const shortTime = (t) => t.replace("T", " ").replace(/\.\d+Z$/, "Z");
  const text = (v) => {
    if (v === undefined) return "";
    if (typeof v === "string") return v;
    return JSON.stringify(v);
  };
  const view = $("view");
  const showError = (e) => {
    const p = $("error");
    p.textContent = e ? String(e.message || e) : "";
    p.hidden = !e;
  };
  let seen = 0; // the highest revision shown
  const setRevision = (r) => {
    if (r > seen) seen = r;
    $("revision").textContent = "revision " + seen;
  };

  // Namespaces, in the header.
  const loadNamespaces = async () => {
    const body = await api("namespaces");
    const list = $("namespaces");
    list.replaceChildren();
    for (const n of body.namespaces) {
      const a = el("a", n.name);
      a.href = link({ ns: n.name });
      if (n.name === state.ns) a.setAttribute("aria-current", "page");
      const li = el("li");
      li.append(a, " (" + n.records.toLocaleString("en") + ")");
      list.append(li);
    }
    setRevision(body.revision);
    return body;
  };

  // The front page: a table of namespaces.
  const showIndex = async () => {
    const body = await loadNamespaces();
    $("where").textContent = "";
    const table = el("table");
    const head = table.createTHead().insertRow();
    head.append(el("th", "namespace"), el("th", "records", "n"));
    const rows = table.createTBody();
    for (const n of body.namespaces) {
      const row = rows.insertRow();
      const a = el("a", n.name);
      a.href = link({ ns: n.name });
      row.insertCell().append(a);
      row.insertCell().append(n.records.toLocaleString("en"));
      row.cells[1].className = "n";
    }
    view.replaceChildren(
      body.namespaces.length ? table : el("p", "No records.")
    );
  };

  // A namespace's records.
  let table = null;
  let lastRevision = 0;
  const buildTableView = () => {
    const tools = el("div", null, "toolbar");
    const filter = el("input");
    filter.id = "filter";
    filter.type = "search";
    filter.placeholder = "Filter: text in the key or the value";
    filter.setAttribute("aria-label", "Filter");
    filter.value = state.q;
    let timer = null;
    filter.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        state.q = filter.value;
        state.offset = 0;
        remember();
        refresh();
      }, 150);
    });
    const matches = el("output");
    matches.id = "matches";
    const pager = el("span", null, "pager");
    const prev = el("button", "\u2039 Previous");
    prev.id = "prev";
    const next = el("button", "Next \u203a");
    next.id = "next";
    prev.addEventListener("click", () => {
      state.offset = Math.max(0, state.offset - state.limit);
      remember();
      refresh();
    });
    next.addEventListener("click", () => {
      state.offset += state.limit;
      remember();
      refresh();
    });
    pager.append(prev, " ", next);
    tools.append(filter, matches, pager);
    const t = el("table");
    t.id = "records";
    t.createTHead();
    t.createTBody();
    view.replaceChildren(tools, t);
    table = { t, matches, prev, next };
  };
  const remember = () => {
    const query = { ns: state.ns };
    if (state.sort !== "key") query.sort = state.sort;
    if (state.q) query.q = state.q;
    if (state.offset) query.offset = state.offset;
    history.replaceState(null, "", link(query));
  };
  const sortBy = (name) => {
    state.sort = state.sort === name ? "-" + name : name;
    state.offset = 0;
    remember();
    refresh();
  };
  const header = (label, sort, numeric) => {
    const th = el("th", null, numeric ? "n" : "");
    const button = el("button", label);
    button.addEventListener("click", () => sortBy(sort));
    th.append(button);
    if (state.sort === sort) th.setAttribute("aria-sort", "ascending");
    if (state.sort === "-" + sort) th.setAttribute("aria-sort", "descending");
    return th;
  };
  const columnsOf = (records) => {
    const fields = [];
    let scalar = false;
    for (const r of records) {
      const v = r.value;
      if (v !== null && typeof v === "object" && !Array.isArray(v)) {
        for (const [k, f] of Object.entries(v)) {
          if (k.startsWith("$")) continue;
          if ((f === null || typeof f !== "object") && !fields.includes(k) && fields.length < 12) {
            fields.push(k);
          }
        }
      } else {
        scalar = true;
      }
    }
    return { fields, scalar };
  };
  const showRecords = async () => {
    if (!table) buildTableView();
    $("where").textContent = "/ " + state.ns;
    const query = { limit: state.limit, offset: state.offset, sort: state.sort };
    if (state.q) query.q = state.q;
    const [body] = await Promise.all([
      api("namespaces/" + encodeURIComponent(state.ns) + "/records?" + new URLSearchParams(query)),
      loadNamespaces(),
    ]);
    setRevision(body.revision);
    const { t, matches, prev, next } = table;
    const { fields, scalar } = columnsOf(body.records);
    const head = el("tr");
    head.append(header("key", "key"), header("version", "version", true), header("updated", "updated"));
    if (scalar) head.append(header("(value)", "key"));
    for (const f of fields) head.append(header(f, "value." + f));
    t.tHead.replaceChildren(head);
    const rows = [];
    for (const r of body.records) {
      const row = el("tr");
      row.dataset.key = r.key;
      if (lastRevision && r.mod_revision > lastRevision) row.className = "changed";
      const a = el("a", r.key);
      a.href = link({ ns: state.ns, key: r.key });
      row.insertCell().append(a);
      const version = row.insertCell();
      version.textContent = r.version;
      version.className = "n";
      version.title = "created at revision " + r.create_revision + ", modified at revision " + r.mod_revision;
      const updated = row.insertCell();
      updated.textContent = shortTime(r.updated);
      updated.title = r.updated;
      const v = r.value;
      const isMap = v !== null && typeof v === "object" && !Array.isArray(v);
      if (scalar) row.insertCell().textContent = isMap ? "" : text(v);
      for (const f of fields) {
        const cell = row.insertCell();
        const fv = isMap ? v[f] : undefined;
        cell.textContent = text(fv);
        if (typeof fv === "number") cell.className = "n";
      }
      rows.push(row);
    }
    t.tBodies[0].replaceChildren(...rows);
    lastRevision = body.revision;
    const first = body.records.length ? body.offset + 1 : 0;
    const last = body.offset + body.records.length;
    const total = count(body.total, "record", "records");
    matches.textContent =
      (state.q ? body.matched.toLocaleString("en") + " of " + total + " match" : total) +
      (body.matched ? "; showing " + first.toLocaleString("en") + "\u2013" + last.toLocaleString("en") : "");
    prev.disabled = body.offset === 0;
    next.disabled = last >= body.matched;
  };

  // One record and its history.
  const changes = (before, after) => {
    if (!before || before.deleted) return "created";
    if (after.deleted) return "deleted";
    const a = before.value;
    const b = after.value;
    const isMap = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
    if (!isMap(a) || !isMap(b)) return text(a) + " \u2192 " + text(b);
    const out = [];
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const x = text(a[k]);
      const y = text(b[k]);
      if (x !== y) out.push(k + ": " + (k in a ? x : "(none)") + " \u2192 " + (k in b ? y : "(none)"));
    }
    return out.length ? out.join("; ") : "(same value)";
  };
  const showRecord = async () => {
    $("where").textContent = "/ " + state.ns + " / " + state.key;
    const path = encodeURIComponent(state.ns) + "/" + "records/" + encodeURIComponent(state.key);
    const hpath = encodeURIComponent(state.ns) + "/" + "history/" + encodeURIComponent(state.key);
    const [record, past] = await Promise.all([
      api("namespaces/" + path).catch((e) => ({ missing: e })),
      api("namespaces/" + hpath).catch(() => ({ versions: [], total: 0 })),
      loadNamespaces(),
    ]);
    const parts = [];
    const back = el("a", "\u2039 " + state.ns);
    back.href = link({ ns: state.ns });
    parts.push(el("p"));
    parts[0].append(back);
    const title = el("h2", state.key);
    title.id = "key";
    parts.push(title);
    if (record.missing) {
      parts.push(el("p", String(record.missing.message)));
    } else {
      setRevision(record.revision);
      const meta = el("dl", null, "meta");
      const item = (k, v) => meta.append(el("dt", k), el("dd", v));
      item("version", String(record.version));
      item("created at revision", String(record.create_revision));
      item("modified at revision", String(record.mod_revision));
      item("updated", record.updated);
      parts.push(meta);
      const pre = el("pre", JSON.stringify(record.value, null, 2));
      pre.id = "value";
      parts.push(pre);
    }
    parts.push(el("h3", "History"));
    if (!past.versions.length) {
      parts.push(el("p", "No history: the store holds none for this record."));
    } else {
      if (past.total > past.versions.length) {
        parts.push(el("p", "The last " + past.versions.length + " of " + past.total + " versions."));
      }
      const t = el("table");
      t.id = "history";
      const head = t.createTHead().insertRow();
      head.append(el("th", "revision", "n"), el("th", "time"), el("th", "version", "n"), el("th", "what changed"));
      const body = t.createTBody();
      let before = null;
      const rows = [];
      for (const v of past.versions) {
        const row = el("tr");
        row.insertCell().textContent = v.revision;
        row.cells[0].className = "n";
        row.insertCell().textContent = shortTime(v.time);
        row.insertCell().textContent = v.deleted ? "" : v.version;
        row.cells[2].className = "n";
        const what = row.insertCell();
        what.textContent = changes(before, v);
        what.className = "change";
        rows.push(row);
        before = v;
      }
      body.append(...rows.reverse());
      parts.push(t);
    }
    view.replaceChildren(...parts);
  };

  // Refreshing: one load at a time; a change during a load loads again after.
  const show = state.ns && state.key !== null ? showRecord : state.ns ? showRecords : showIndex;
  let loading = false;
  let again = false;
  const refresh = async () => {
    if (loading) {
      again = true;
      return;
    }
    loading = true;
    try {
      await show();
      showError(null);
      // For measurements (the benchmark reads these marks).
      performance.mark("statelog:shown");
    } catch (e) {
      showError(e);
    } finally {
      loading = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  };
  const relevant = (records) =>
    !state.ns ||
    records.length === 0 ||
    records.some((r) => r.namespace === state.ns && (state.key === null || r.key === state.key));

  // Live updates.
  const live = $("live");
  const setLive = (on, words) => {
    live.className = on ? "on" : "off";
    live.textContent = words;
  };
  let opened = false;
  const source = new EventSource("/api/v1/watch");
  source.addEventListener("open", () => {
    setLive(true, "live");
    // After a reconnection the stream resumes where it was; a first one
    // starts now, so what changed while connecting is loaded again.
    if (opened) refresh();
    opened = true;
  });
  source.addEventListener("change", (e) => {
    const change = JSON.parse(e.data);
    setRevision(change.revision);
    if (relevant(change.records)) refresh();
    else loadNamespaces().catch(showError);
  });
  source.addEventListener("progress", (e) => setRevision(JSON.parse(e.data).revision));
  source.addEventListener("end", (e) => setLive(false, "stopped: " + JSON.parse(e.data).error));
  source.addEventListener("error", () => {
    setLive(false, source.readyState === EventSource.CLOSED ? "disconnected: reload the page" : "reconnecting");
  });
  refresh();
})();
