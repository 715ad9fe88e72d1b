// The lineage DAG, drawn by cytoscape.js with the dagre layout (vendored under /static/vendor,
// loaded as classic scripts by the shell). Parents above children; clicking opens a version.
import { errorBox, h, num } from "./util.js";

function summary(stats) {
  const s = stats || {};
  return `+${num(s.added || 0)} ~${num(s.modified || 0)} -${num(s.removed || 0)}`;
}

/** Draw `lineage` ({root, nodes, edges}) into `box`, marking `current`; returns the graph. */
export function drawLineage(box, lineage, current) {
  const cytoscape = window.cytoscape;
  if (!cytoscape || !window.cytoscapeDagre) {
    box.replaceChildren(errorBox("the graph library did not load"));
    return null;
  }
  if (!drawLineage.registered) {
    cytoscape.use(window.cytoscapeDagre);
    drawLineage.registered = true;
  }
  const known = new Set(lineage.nodes.map((n) => n.id));
  const elements = [
    ...lineage.nodes.map((n) => ({
      group: "nodes",
      data: {
        id: n.id,
        label: n.state === "missing" ? `${n.id.slice(0, 12)}\n(missing)` : `${n.name}@${n.version}\n${summary(n.stats)}`,
        title: `${n.project}/${n.name}@${n.version} (${n.state})`,
        state: n.state,
      },
      classes: n.id === current ? "current" : "",
    })),
    ...lineage.edges
      .filter((e) => known.has(e.parent) && known.has(e.child))
      .map((e) => ({ group: "edges", data: { id: `${e.parent}->${e.child}`, source: e.parent, target: e.child } })),
  ];
  box.replaceChildren();
  const cy = cytoscape({
    container: box,
    elements,
    minZoom: 0.2,
    maxZoom: 2.5,
    style: [
      {
        selector: "node",
        style: {
          shape: "round-rectangle",
          "background-color": "#e3eaf8",
          "border-color": "#2860c8",
          "border-width": 1,
          label: "data(label)",
          "text-wrap": "wrap",
          "text-valign": "center",
          "text-halign": "center",
          "font-size": 11,
          "font-family": "system-ui, sans-serif",
          color: "#1d2330",
          width: 150,
          height: 42,
        },
      },
      { selector: "node[state = 'published']", style: { "background-color": "#dcefe2", "border-color": "#1c7c3a" } },
      { selector: "node[state = 'draft']", style: { "background-color": "#fbeedb", "border-color": "#a86400" } },
      { selector: "node[state = 'missing']", style: { "background-color": "#eeeeee", "border-style": "dashed", color: "#6b7383" } },
      { selector: "node.current", style: { "border-width": 3, "border-color": "#b3261e", "font-weight": "bold" } },
      {
        selector: "edge",
        style: {
          width: 1.5,
          "line-color": "#8a93a5",
          "target-arrow-color": "#8a93a5",
          "target-arrow-shape": "triangle",
          "curve-style": "bezier",
        },
      },
    ],
    layout: { name: "dagre", rankDir: "TB", nodeSep: 30, rankSep: 45, padding: 12, fit: true },
  });
  cy.on("tap", "node", (evt) => {
    location.href = `/v/${evt.target.id()}`;
  });
  cy.on("mouseover", "node", (evt) => {
    box.title = evt.target.data("title");
    box.style.cursor = "pointer";
  });
  cy.on("mouseout", "node", () => {
    box.title = "";
    box.style.cursor = "";
  });
  if (cy.zoom() > 1.2) {
    cy.zoom(1.2);
    cy.center();
  }
  box.dataset.nodes = String(cy.nodes().length);
  box.dataset.edges = String(cy.edges().length);
  box.dataset.ready = "1";
  window.dsmountGraph = cy;
  box.after(h("span", { hidden: true, testid: "dag-count", dataset: { nodes: box.dataset.nodes, edges: box.dataset.edges } }));
  return cy;
}
