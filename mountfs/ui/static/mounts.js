// "/mounts": the live mounts of this machine, refreshed every few seconds.
import { api, errorBox, h, human, num, short } from "./util.js";

const REFRESH_MS = 5000;

export async function mountsPage(app) {
  const body = h("div", { testid: "mounts" });
  const stamp = h("span.muted", { testid: "mounts-updated" });
  const load = async () => {
    try {
      const d = await api("/api/mounts");
      const rows = d.items.map((m) => h("tr", { testid: "mount-row", dataset: { mountpoint: m.mountpoint } },
        h("td.mono", { testid: "mount-point" }, m.mountpoint),
        h("td", { testid: "mount-state" }, h(`span.badge.${m.ready ? "published" : "draft"}`, { title: m.error || "" }, m.state)),
        h("td", {}, m.version ? h("a.mono", { href: `/v/${m.version}`, title: m.version }, short(m.version)) : ""),
        h("td", {}, m.label || ""),
        h("td.num", {}, m.pid === null || m.pid === undefined ? "" : String(m.pid)),
        h("td.num", {}, num(m.files)),
        h("td.num", {}, human(m.bytes)),
        h("td", {}, m.writable ? "writable" : "read-only"),
      ));
      if (!rows.length) rows.push(h("tr", { testid: "no-mounts" }, h("td.muted", { colspan: 8 }, "No mounts on this machine.")));
      body.replaceChildren(h("table", { testid: "mounts-table" },
        h("thead", {}, h("tr", {}, ["Mount point", "State", "Version", "Label", "PID", "Files", "Size", "Mode"]
          .map((c) => h(["PID", "Files", "Size"].includes(c) ? "th.num" : "th", {}, c)))),
        h("tbody", {}, rows)));
      body.dataset.count = String(d.items.length);
      stamp.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      body.replaceChildren(errorBox(err));
    }
  };
  app.replaceChildren(h("h1", {}, "Mounts"), h("section.card", {}, stamp, body));
  await load();
  setInterval(load, REFRESH_MS);
}
