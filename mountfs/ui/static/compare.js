// "/compare?source=&target=": what changed from one version to another.
import { api, errorBox, h, human, num, pager, qs, short, versionLabel } from "./util.js";

const PAGE = 200;

export async function comparePage(app, params) {
  const state = { source: params.get("source") || "", target: params.get("target") || "", offset: 0 };
  const versions = h("datalist", { id: "version-ids" });
  const picker = (key, label) => h("label", {}, `${label} `, h("input", {
    type: "text", list: "version-ids", value: state[key], testid: `pick-${key}`, size: 44,
    placeholder: "version id", "aria-label": label,
    onchange: (e) => { state[key] = e.target.value.trim(); },
  }));
  const result = h("div", { testid: "compare-result" });
  const run = async () => {
    history.replaceState(null, "", `/compare${qs({ source: state.source, target: state.target })}`);
    if (!state.source || !state.target) {
      result.replaceChildren(h("p.muted", {}, "Pick a source (older) and a target (newer) version."));
      return;
    }
    try {
      const d = await api(`/api/compare${qs({ source: state.source, target: state.target, offset: state.offset, limit: PAGE })}`);
      result.replaceChildren(...render(d));
    } catch (err) {
      result.replaceChildren(errorBox(err));
    }
  };
  const render = (d) => {
    const c = d.counts || {};
    const b = d.bytes || {};
    const box = (k, label, bytes) => h("div.box", { testid: `cmp-${k}` },
      h(`div.n.${k}`, { testid: `cmp-count-${k}` }, num(c[k] || 0)),
      h("div.muted", {}, label, bytes === undefined ? null : [" · ", h("span", { testid: `cmp-bytes-${k}`, title: `${num(bytes)} bytes` }, human(bytes))]));
    const rows = d.items.map((it) => h("tr", { testid: "cmp-row", dataset: { status: it.status, path: it.path } },
      h(`td.status-pill.${it.status}`, {}, it.status),
      h("td.mono", {}, it.path),
      h("td.num", { title: it.old_size === null || it.old_size === undefined ? "" : `${num(it.old_size)} bytes` }, human(it.old_size)),
      h("td.num", { title: it.size === null || it.size === undefined ? "" : `${num(it.size)} bytes` }, it.status === "removed" ? "" : human(it.size)),
      h("td.hash", { title: it.sha256 || "" }, it.sha256 ? it.sha256.slice(0, 16) : ""),
    ));
    if (!rows.length) rows.push(h("tr", { testid: "cmp-empty" }, h("td.muted", { colspan: 5 }, "No differences.")));
    return [
      h("p", {}, h("a.mono", { href: `/v/${d.source}`, testid: "cmp-source" }, short(d.source)), " → ",
        h("a.mono", { href: `/v/${d.target}`, testid: "cmp-target" }, short(d.target))),
      h("div.summary", { testid: "cmp-summary" },
        box("added", "Added", b.added), box("modified", "Modified", b.modified),
        box("removed", "Removed", b.removed), box("renamed", "Renamed")),
      h("table", { testid: "cmp-table", style: "margin-top:10px" },
        h("thead", {}, h("tr", {}, h("th", {}, "Status"), h("th", {}, "Path"), h("th.num", {}, "Old size"),
          h("th.num", {}, "Size"), h("th", {}, "SHA-256"))),
        h("tbody", {}, rows)),
      pager(d.total, state.offset, PAGE, (o) => {
        state.offset = o;
        run();
      }, "cmp-pager"),
    ];
  };
  app.replaceChildren(
    h("h1", {}, "Compare versions"),
    h("section.card", {},
      h("form.filters", {
        testid: "compare-form",
        onsubmit: (e) => {
          e.preventDefault();
          for (const k of ["source", "target"]) state[k] = app.querySelector(`[data-testid=pick-${k}]`).value.trim();
          state.offset = 0;
          run();
        },
      }, picker("source", "Source"), picker("target", "Target"),
      h("button.primary", { type: "submit", testid: "compare-go" }, "Compare"),
      h("button", {
        type: "button", testid: "compare-swap",
        onclick: () => {
          const s = app.querySelector("[data-testid=pick-source]");
          const t = app.querySelector("[data-testid=pick-target]");
          [s.value, t.value] = [t.value, s.value];
        },
      }, "Swap")),
      versions,
      result,
    ),
  );
  api("/api/datasets?limit=500&sort=created&order=desc").then((d) => {
    versions.replaceChildren(...d.items.map((v) => h("option", { value: v.id }, versionLabel(v))));
  }).catch(() => {});
  await run();
}
