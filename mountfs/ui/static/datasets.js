// "/": the datasets (versions) of the catalogue, searchable, filterable, sortable and paged.
import { api, badge, errorBox, h, human, num, pager, qs, short, tags, when } from "./util.js";

const LIMIT = 50; // rows a page, unless the URL says ?limit=

// [key, label, API sort key or null, numeric]
const COLUMNS = [
  ["project", "Project", "project", false],
  ["name", "Name", "name", false],
  ["version", "Version", "version", false],
  ["tags", "Tags", null, false],
  ["state", "State", null, false],
  ["bytes", "Size", "bytes", true],
  ["files", "Files", "files", true],
  ["created", "Created", "created", false],
];

export async function datasetsPage(app, params) {
  const state = {
    q: params.get("q") || "",
    project: params.get("project") || "",
    tag: params.get("tag") || "",
    state: params.get("state") || "",
    sort: params.get("sort") || "created",
    order: params.get("order") || "desc",
    offset: Number(params.get("offset") || 0),
    limit: Math.min(1000, Math.max(1, Number(params.get("limit")) || LIMIT)),
  };
  const results = h("div", { testid: "datasets" });
  let seq = 0;

  const load = async () => {
    const mine = ++seq;
    const query = { ...state };
    if (!query.offset) delete query.offset;
    const urlState = { ...state };
    if (urlState.sort === "created") delete urlState.sort;
    if (urlState.order === "desc") delete urlState.order;
    if (!urlState.offset) delete urlState.offset;
    if (urlState.limit === LIMIT) delete urlState.limit;
    history.replaceState(null, "", `/${qs(urlState)}`);
    results.dataset.loading = "1";
    try {
      const data = await api(`/api/datasets${qs(query)}`);
      if (mine !== seq) return;
      results.replaceChildren(table(data), pager(data.total, state.offset, state.limit, (o) => {
        state.offset = o;
        load();
      }));
      results.dataset.total = String(data.total);
    } catch (err) {
      if (mine !== seq) return;
      results.replaceChildren(errorBox(err));
    } finally {
      if (mine === seq) delete results.dataset.loading;
    }
  };

  const table = (data) => {
    const head = h("tr", {}, COLUMNS.map(([key, label, sortKey, numeric]) => {
      const sorted = sortKey && state.sort === sortKey;
      const arrow = sorted ? (state.order === "asc" ? " ▲" : " ▼") : "";
      return h(`th${numeric ? ".num" : ""}`, {
        class: [sortKey ? "sortable" : "", sorted ? "sorted" : ""].filter(Boolean).join(" "),
        testid: `col-${key}`,
        title: sortKey ? "sort" : null,
        onclick: sortKey ? () => {
          if (state.sort === sortKey) state.order = state.order === "asc" ? "desc" : "asc";
          else {
            state.sort = sortKey;
            state.order = numeric || sortKey === "created" ? "desc" : "asc";
          }
          state.offset = 0;
          load();
        } : null,
      }, label + arrow);
    }), h("th", {}, "Id"));
    const rows = data.items.map((v) => h("tr", { testid: "dataset-row", dataset: { id: v.id } },
      h("td", { testid: "cell-project" }, v.project),
      h("td", { testid: "cell-name" }, h("a", { href: `/v/${v.id}`, testid: "dataset-link" }, v.name)),
      h("td", { testid: "cell-version" }, v.version),
      h("td", { testid: "cell-tags" }, tags(v.tags)),
      h("td", {}, badge(v.state)),
      h("td.num", { testid: "cell-bytes", title: `${num(v.bytes)} bytes` }, human(v.bytes)),
      h("td.num", { testid: "cell-files" }, num(v.files)),
      h("td", { testid: "cell-created" }, when(v.created)),
      h("td.mono", { title: v.id }, short(v.id)),
    ));
    if (!rows.length) rows.push(h("tr", { testid: "no-datasets" }, h("td.muted", { colspan: 9 }, "No datasets match.")));
    return h("table", { testid: "datasets-table" }, h("thead", {}, head), h("tbody", {}, rows));
  };

  let timer = null;
  const debounced = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.offset = 0;
      load();
    }, 250);
  };
  const input = (key, placeholder, testid, type = "text") => h("input", {
    type, placeholder, value: state[key], testid, "aria-label": placeholder,
    oninput: (e) => {
      state[key] = e.target.value.trim();
      debounced();
    },
  });
  const stateSelect = h("select", {
    testid: "filter-state", "aria-label": "state",
    onchange: (e) => {
      state.state = e.target.value;
      state.offset = 0;
      load();
    },
  }, ["", "closed", "published", "draft"].map((s) => h("option", { value: s, selected: s === state.state }, s || "any state")));

  app.replaceChildren(
    h("h1", {}, "Datasets"),
    h("section.card", {},
      h("div.filters", {},
        input("q", "Search project, name, tags, description", "search", "search"),
        input("project", "Project", "filter-project"),
        input("tag", "Tag", "filter-tag"),
        stateSelect,
      ),
      results,
    ),
  );
  await load();
}
