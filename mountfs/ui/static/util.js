// Shared helpers of the dsmount ui pages: the JSON API, element building, formatting, dialogs.

/** GET (or POST with a body) a JSON API path; throws Error(message) on a 4xx/5xx {"error"}. */
export async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  const resp = await fetch(path, init);
  let data = null;
  try {
    data = await resp.json();
  } catch (_) {
    data = null;
  }
  if (!resp.ok) {
    const msg = data && data.error ? data.error : `${resp.status} ${resp.statusText}`;
    throw new Error(msg);
  }
  return data;
}

/** Query string from an object, leaving out empty values. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") u.set(k, String(v));
  }
  const s = u.toString();
  return s ? `?${s}` : "";
}

/**
 * h("tag.class", {attrs, on*: handler, testid}, ...children): a DOM element.
 * Children may be strings, numbers, nodes, arrays or null.
 */
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "testid") el.dataset.testid = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = [el.className, v].filter(Boolean).join(" ");
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value") el.value = v;
    else if (k === "checked" || k === "disabled" || k === "selected") el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Bytes in binary units, as the CLI prints them (KiB, MiB, ...). */
export function human(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

/** An ISO date as "YYYY-MM-DD HH:MM:SS" (UTC as stored), or "" when absent. */
export function when(iso) {
  if (!iso) return "";
  return String(iso).replace("T", " ").replace(/\.\d+/, "").replace(/\+00:00$|Z$/, "");
}

export function num(n) {
  return n === null || n === undefined ? "" : Number(n).toLocaleString("en-US");
}

export function short(id) {
  return id ? String(id).slice(0, 12) : "";
}

export function badge(state) {
  return h(`span.badge.${state}`, { testid: "state" }, state);
}

export function tags(list) {
  return (list || []).map((t) => h("span.tag", { testid: "tag" }, t));
}

export function versionLabel(v) {
  return `${v.project}/${v.name}@${v.version}`;
}

export function errorBox(err) {
  return h("p.error", { testid: "error", role: "alert" }, String(err && err.message ? err.message : err));
}

/** A pager: "first–last of total" with previous/next; calls go(newOffset). */
export function pager(total, offset, limit, go, testid = "pager") {
  const last = Math.min(offset + limit, total);
  return h("div.pager", { testid },
    h("button", { testid: `${testid}-prev`, disabled: offset <= 0, onclick: () => go(Math.max(0, offset - limit)) }, "‹ Previous"),
    h("span", { testid: `${testid}-range` }, total ? `${num(offset + 1)}–${num(last)} of ${num(total)}` : "0 of 0"),
    h("button", { testid: `${testid}-next`, disabled: last >= total, onclick: () => go(offset + limit) }, "Next ›"),
  );
}

/**
 * A modal dialog. fields: [{name, label, value, multiline}]; resolves to the field values
 * ({} when there are none) on confirm, null on cancel.
 */
export function modal(title, message, { fields = [], okLabel = "Confirm", danger = false } = {}) {
  return new Promise((resolve) => {
    const inputs = {};
    const close = (result) => {
      back.remove();
      document.removeEventListener("keydown", onKey);
      resolve(result);
    };
    const ok = () => {
      const out = {};
      for (const [k, el] of Object.entries(inputs)) out[k] = el.value;
      close(out);
    };
    const onKey = (e) => {
      if (e.key === "Escape") close(null);
    };
    const body = fields.map((f) => {
      const el = f.multiline
        ? h("textarea", { rows: 6, testid: `confirm-field-${f.name}` })
        : h("input", { type: "text", testid: `confirm-field-${f.name}` });
      el.value = f.value || "";
      inputs[f.name] = el;
      return h("label", {}, f.label, el);
    });
    const back = h("div.modal-back", { testid: "confirm-backdrop" },
      h("div.modal", { testid: "confirm-dialog", role: "dialog", "aria-modal": "true" },
        h("h2", {}, title),
        message ? h("p", { testid: "confirm-message" }, message) : null,
        body,
        h("div.buttons", {},
          h("button", { testid: "confirm-cancel", onclick: () => close(null) }, "Cancel"),
          h(danger ? "button.danger" : "button.primary", { testid: "confirm-ok", onclick: ok }, okLabel),
        ),
      ),
    );
    document.addEventListener("keydown", onKey);
    document.body.append(back);
    (Object.values(inputs)[0] || back.querySelector("[data-testid=confirm-ok]")).focus();
  });
}

let infoPromise = null;

/** /api/info, fetched once per page. */
export function info() {
  if (!infoPromise) infoPromise = api("/api/info");
  return infoPromise;
}
