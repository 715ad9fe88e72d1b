// "/v/{id}": one version: metadata, description, tags, change summary, operation log,
// differential snapshot (changes) table, content tree, lineage graph, and the actions.
import {
  api, badge, errorBox, h, human, info, modal, num, pager, qs, short, tags, versionLabel, when,
} from "./util.js";
import { drawLineage } from "./lineage.js";

const PAGE = 200;

export async function versionPage(app, id, params) {
  // a reference may be an id, a prefix or project/name[@version] (slashes kept)
  const ref = id.split("/").map(encodeURIComponent).join("/");
  const [v, i] = await Promise.all([api(`/api/versions/${ref}`), info().catch(() => ({}))]);
  document.title = `${versionLabel(v)} · dsmount`;
  const s = v.stats || {};
  const lineageBox = h("div.dag", { id: "dag", testid: "dag" });
  app.replaceChildren(h("div", {},
    h("h1", { testid: "version-title" }, versionLabel(v), " ", badge(v.state)),
    i.allow_changes ? actions(v) : null,
    h("div.grid2", {},
      h("section.card", { testid: "metadata" },
        h("h2", {}, "Metadata"),
        h("dl.meta", {},
          meta("Id", h("span.mono", {}, v.id), "meta-id"),
          meta("Project", v.project, "meta-project"),
          meta("Name", v.name, "meta-name"),
          meta("Version", v.version, "meta-version"),
          meta("State", v.state, "meta-state"),
          meta("Created", `${when(v.created)}${v.user ? ` by ${v.user}@${v.host || ""}` : ""}`, "meta-created"),
          v.closed ? meta("Closed", when(v.closed), "meta-closed") : null,
          v.published ? meta("Published", when(v.published), "meta-published") : null,
          meta("Storage", v.data_url || "", "meta-storage"),
          meta("Files", num(s.files), "meta-files"),
          meta("Size", `${human(s.bytes)} (${num(s.bytes)} bytes)`, "meta-bytes"),
          meta("Stored", `${human(s.stored_bytes)} in ${num(v.chunks)} chunk(s) of its own`, "meta-stored"),
          meta("Parents", links(v.parents, "parent-link"), "meta-parents"),
          meta("Children", links(v.children, "child-link"), "meta-children"),
          meta("Tags", tags(v.tags), "meta-tags"),
          v.metadata && Object.keys(v.metadata).length
            ? meta("Metadata", h("span.mono", {}, JSON.stringify(v.metadata)), "meta-metadata") : null,
        ),
        h("h2", { style: "margin-top:12px" }, "Description"),
        h("p.description", { testid: "description" }, v.description || h("span.muted", {}, "(none)")),
      ),
      h("section.card", { testid: "change-summary" },
        h("h2", {}, "Changes against its parents"),
        h("div.summary", {},
          box("added", "Added", s.added, s.added_bytes),
          box("modified", "Modified", s.modified, s.modified_bytes),
          box("removed", "Removed", s.removed, s.removed_bytes),
        ),
        (v.parents || []).length
          ? h("p", { testid: "compare-links" }, "Compare with parent: ",
            v.parents.map((p) => h("a", {
              href: `/compare${qs({ source: p, target: v.id })}`, testid: "compare-parent", style: "margin-right:8px",
            }, short(p))))
          : h("p.muted", {}, "No parents: every file is added."),
        h("h2", { style: "margin-top:12px" }, "Lineage"),
        lineageBox,
        h("p.muted", { testid: "dag-hint" }, "Click a version to open it."),
      ),
    ),
    h("section.card", { testid: "oplog" }, h("h2", {}, "Operation log"), oplog(v.oplog || [])),
    h("section.card", { testid: "changes" }, h("h2", {}, "Differential snapshot"), changesTable(v.id)),
    h("section.card", { testid: "content" }, h("h2", {}, "Content"), contentTree(v.id, params.get("path") || "")),
  ));
  try {
    const lin = await api(`/api/versions/${encodeURIComponent(v.id)}/lineage`);
    drawLineage(lineageBox, lin, v.id);
  } catch (err) {
    lineageBox.replaceChildren(errorBox(err));
  }
}

function meta(label, value, testid) {
  return [h("dt", {}, label), h("dd", { testid }, value)];
}

function links(ids, testid) {
  if (!ids || !ids.length) return h("span.muted", {}, "none");
  return ids.map((p) => h("a.mono", { href: `/v/${p}`, testid, style: "margin-right:8px", title: p }, short(p)));
}

function box(kind, label, count, bytes) {
  return h("div.box", { testid: `summary-${kind}` },
    h(`div.n.${kind}`, { testid: `count-${kind}` }, num(count || 0)),
    h("div.muted", {}, label, " · ", h("span", { testid: `bytes-${kind}`, title: `${num(bytes)} bytes` }, human(bytes || 0))),
  );
}

function oplog(entries) {
  if (!entries.length) return h("p.muted", {}, "Empty.");
  const keys = [];
  for (const e of entries) for (const k of Object.keys(e)) if (!keys.includes(k)) keys.push(k);
  const first = ["time", "at", "op", "action", "command"].filter((k) => keys.includes(k));
  const cols = [...first, ...keys.filter((k) => !first.includes(k))];
  const cell = (val) => (val === null || val === undefined ? ""
    : typeof val === "object" ? JSON.stringify(val) : String(val));
  return h("table", { testid: "oplog-table" },
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c)))),
    h("tbody", {}, entries.map((e) => h("tr", { testid: "oplog-row" },
      cols.map((c) => h(`td${c === "command" || c === "args" ? ".mono" : ""}`, {},
        c === "time" ? when(e[c]) : cell(e[c])))))),
  );
}

function changesTable(id) {
  const state = { status: "", offset: 0 };
  const body = h("div", { testid: "changes-body" });
  const load = async () => {
    try {
      const d = await api(`/api/versions/${encodeURIComponent(id)}/changes${qs({ ...state, limit: PAGE })}`);
      const rows = d.items.map((c) => h("tr", { testid: "change-row", dataset: { status: c.status, path: c.path } },
        h(`td.status-pill.${c.status}`, {}, c.status),
        h("td.mono", {}, c.path),
        h("td", {}, c.kind || ""),
        h("td.num", { title: c.size === null || c.size === undefined ? "" : `${num(c.size)} bytes` }, human(c.size)),
        h("td.hash", { title: c.sha256 || "" }, c.sha256 ? c.sha256.slice(0, 16) : ""),
        h("td.mono", {}, c.location || ""),
        h("td.mono", { title: c.origin || "" }, short(c.origin)),
      ));
      if (!rows.length) rows.push(h("tr", {}, h("td.muted", { colspan: 7 }, "No changes.")));
      body.replaceChildren(
        h("table", { testid: "changes-table" },
          h("thead", {}, h("tr", {}, ["Status", "Path", "Kind", "Size", "SHA-256", "Location", "Origin"]
            .map((c) => h(c === "Size" ? "th.num" : "th", {}, c)))),
          h("tbody", {}, rows)),
        pager(d.total, state.offset, PAGE, (o) => {
          state.offset = o;
          load();
        }, "changes-pager"),
      );
    } catch (err) {
      body.replaceChildren(errorBox(err));
    }
  };
  const filter = h("select", {
    testid: "changes-status", "aria-label": "status",
    onchange: (e) => {
      state.status = e.target.value;
      state.offset = 0;
      load();
    },
  }, ["", "added", "modified", "removed"].map((s) => h("option", { value: s }, s || "all changes")));
  load();
  return [h("div.filters", {}, filter), body];
}

// The content listing: a folder at a time (breadcrumbs navigate), folders expand in place;
// every listing is paged by PAGE entries ("Show more"), so huge folders stay fast.
function contentTree(id, startPath) {
  const crumbs = h("div.crumbs", { testid: "tree-crumbs" });
  const tbody = h("tbody", {});
  const table = h("table.tree", { testid: "tree" },
    h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th.num", {}, "Size"), h("th", {}, "SHA-256"), h("th", {}, "Origin"))),
    tbody);

  const go = (path) => {
    const u = new URL(location.href);
    if (path) u.searchParams.set("path", path);
    else u.searchParams.delete("path");
    history.replaceState(null, "", u.pathname + u.search);
    table.dataset.path = path;
    const parts = path ? path.split("/") : [];
    crumbs.replaceChildren(h("span", {},
      h("a", { href: "#", testid: "crumb", onclick: (e) => { e.preventDefault(); go(""); } }, "/"),
      parts.map((p, k) => {
        const sub = parts.slice(0, k + 1).join("/");
        return [h("a", { href: "#", testid: "crumb", onclick: (e) => { e.preventDefault(); go(sub); } }, p), "/"];
      }),
    ));
    tbody.replaceChildren();
    listInto(path, 0, null, 0, []);
  };

  // Insert the entries of `path` (from offset) after `anchor` (null: at the end) at `depth`,
  // and collect their rows in `into` (so a collapse removes every page of them).
  const listInto = async (path, offset, anchor, depth, into) => {
    const placeholder = h("tr", { testid: "tree-loading" }, h("td.muted", { colspan: 4 }, "Loading…"));
    if (anchor) anchor.after(placeholder);
    else tbody.append(placeholder);
    let d;
    try {
      d = await api(`/api/versions/${encodeURIComponent(id)}/tree${qs({ path, offset, limit: PAGE })}`);
    } catch (err) {
      const row = h("tr", {}, h("td", { colspan: 4 }, errorBox(err)));
      placeholder.replaceWith(row);
      into.push(row);
      return;
    }
    const rows = d.items.map((e) => entryRow(e, depth));
    if (offset + d.items.length < d.total) {
      const more = h("tr", { testid: "tree-more", dataset: { path } },
        h("td", { colspan: 4, style: `padding-left:${8 + depth * 18}px` },
          h("button", {
            testid: "tree-more-button",
            onclick: () => {
              const prev = more.previousElementSibling;
              more.remove();
              into.splice(into.indexOf(more), 1);
              listInto(path, offset + d.items.length, prev, depth, into);
            },
          }, `Show ${num(Math.min(PAGE, d.total - offset - d.items.length))} more`),
          h("span.muted", {}, ` (${num(offset + d.items.length)} of ${num(d.total)} shown)`)));
      rows.push(more);
    }
    if (!rows.length && depth === 0) rows.push(h("tr", { testid: "tree-empty" }, h("td.muted", { colspan: 4 }, "Empty folder.")));
    placeholder.replaceWith(...rows);
    into.push(...rows);
    if (depth === 0) table.dataset.total = String(d.total);
  };

  const entryRow = (e, depth) => {
    const isDir = e.kind === "dir";
    const pad = `padding-left:${8 + depth * 18}px`;
    const row = h(`tr.row-${isDir ? "dir" : "file"}`, {
      testid: "tree-row", dataset: { path: e.path, kind: e.kind, depth: String(depth) },
    });
    let children = null;
    const toggle = h("span.toggle", {
      testid: isDir ? "tree-toggle" : null,
      onclick: isDir ? async (ev) => {
        ev.stopPropagation();
        if (children) {
          for (const r of children) removeSubtree(r);
          children = null;
          toggle.textContent = "▸";
          row.dataset.expanded = "";
        } else {
          toggle.textContent = "▾";
          row.dataset.expanded = "1";
          children = [];
          await listInto(e.path, 0, row, depth + 1, children);
        }
      } : null,
    }, isDir ? "▸" : "");
    const label = isDir
      ? h("a", { href: "#", testid: "tree-open", onclick: (ev) => { ev.preventDefault(); go(e.path); } }, `${e.name}/`)
      : h("span", {}, e.name, e.target ? h("span.muted", {}, ` → ${e.target}`) : null, e.kind !== "file" ? h("span.muted", {}, ` (${e.kind})`) : null);
    row.append(
      h("td.name", { style: pad }, toggle, label),
      h("td.num", { title: e.size === null || e.size === undefined ? "" : `${num(e.size)} bytes` }, human(e.size)),
      h("td.hash", { title: e.sha256 || "" }, e.sha256 ? e.sha256.slice(0, 16) : ""),
      h("td.mono", { title: e.origin || "" }, short(e.origin)),
    );
    row.subtree = () => children;
    return row;
  };

  const removeSubtree = (r) => {
    if (r.subtree && r.subtree()) for (const c of r.subtree()) removeSubtree(c);
    r.remove();
  };

  go(startPath);
  return [crumbs, table];
}

function actions(v) {
  const status = h("span.muted", { testid: "action-status" });
  const run = async (title, message, path, body, opts = {}) => {
    const fields = await modal(title, message, opts);
    if (fields === null) return;
    try {
      await api(`/api/versions/${encodeURIComponent(v.id)}/${path}`, { ...body(fields), confirm: true });
      if (path === "delete") location.href = "/";
      else location.reload();
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  };
  return h("section.card", { testid: "actions" },
    h("div.actions", {},
      v.state === "closed" ? h("button", {
        testid: "action-publish",
        onclick: () => run("Publish this version?", `${versionLabel(v)} becomes published (read-only for good).`, "publish", () => ({})),
      }, "Publish") : null,
      h("button", {
        testid: "action-description",
        onclick: () => run("Edit the description", null, "description", (f) => ({ description: f.description }), {
          fields: [{ name: "description", label: "Description", value: v.description || "", multiline: true }], okLabel: "Save",
        }),
      }, "Edit description"),
      h("button", {
        testid: "action-tags",
        onclick: () => run("Edit the tags", "Tags separated by spaces or commas.", "tags",
          (f) => ({ tags: f.tags.split(/[\s,]+/).filter(Boolean) }), {
            fields: [{ name: "tags", label: "Tags", value: (v.tags || []).join(" ") }], okLabel: "Save",
          }),
      }, "Edit tags"),
      h("button.danger", {
        testid: "action-delete",
        onclick: () => run("Delete this version?",
          `${versionLabel(v)} (${v.id}) and its data are deleted.${v.state === "published" ? " It is published: it is deleted anyway (force)." : ""}`,
          "delete", () => (v.state === "published" ? { force: true } : {}), {
          okLabel: "Delete", danger: true,
        }),
      }, "Delete"),
      status,
    ));
}
