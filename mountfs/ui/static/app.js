// dsmount ui: draws the page the URL names from the JSON API. Every page is a plain page load
// of the same shell; nothing is built or bundled.
import { errorBox, h, info } from "./util.js";
import { datasetsPage } from "./datasets.js";
import { versionPage } from "./version.js";
import { comparePage } from "./compare.js";
import { mountsPage } from "./mounts.js";

async function showInfo() {
  const slot = document.querySelector("[data-testid=info]");
  try {
    const i = await info();
    slot.replaceChildren(
      h("span", { title: i.home }, `store ${i.store}`),
      " · ",
      h("span", { testid: "mode" }, i.allow_changes ? "changes allowed" : "read-only"),
      ` · dsmount ${i.dsmount}`,
    );
  } catch (err) {
    slot.textContent = `API unavailable: ${err.message}`;
  }
}

async function route() {
  const app = document.getElementById("app");
  const path = decodeURIComponent(location.pathname);
  const params = new URLSearchParams(location.search);
  let page;
  let m;
  if (path === "/" || path === "") page = () => datasetsPage(app, params);
  else if ((m = path.match(/^\/v\/(.+?)\/?$/))) page = () => versionPage(app, m[1], params);
  else if (path === "/compare" || path === "/compare/") page = () => comparePage(app, params);
  else if (path === "/mounts" || path === "/mounts/") page = () => mountsPage(app);
  else page = async () => app.replaceChildren(errorBox(`no page at ${path}`));
  for (const a of document.querySelectorAll("header.top nav a")) {
    a.classList.toggle("current", a.getAttribute("href") === path);
  }
  try {
    await page();
  } catch (err) {
    app.replaceChildren(errorBox(err));
  }
  document.body.dataset.ready = "1";
}

showInfo();
route();
