// The Datagraph dashboard: lists the runs of a store and draws one run's flow as
// an SVG graph with live figures. Plain JavaScript, no dependencies, no build step:
// it talks to the JSON API of the same server (paths relative to this page, so the
// app can be mounted under any prefix).
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const RUNS_EVERY_MS = 2000; // how often the list of runs is refreshed
  const POLL_EVERY_MS = 1500; // a run's figures, when event streams are not available

  // Sizes of the drawing (px).
  const MARGIN = 16;
  const RANK_GAP = 18; // between a column of nodes and a column of edge labels
  const NODE_GAP = 26; // between two nodes of a column
  const LABEL_GAP = 12; // between edge labels, or a label and a node
  const DUMMY_GAP = 8; // around a long edge passing a column
  const NODE_LINE = 17;
  const EDGE_LINE = 15;
  const EDGE_FONT = 11.5;
  // The widest figures an edge label makes room for; larger counts are shortened.
  const EDGE_TEMPLATES = ["written 999,999 · 99.9k/s", "backlog 999,999"];
  const MIN_SCALE = 0.7; // a wide graph shrinks to fit, down to this, then scrolls
  const DEFAULT_COLORS = ["#f8fafc", "#475569"];

  const state = {
    meta: null, // GET api/meta: colours of states
    runs: [],
    runId: null,
    detail: null, // GET api/runs/{id} of the shown run
    view: null, // the drawing of the shown run: {key, nodes, edges}
    source: null, // the EventSource of the shown run
    pollTimer: null,
    selected: null, // {kind: "processor", name} or {kind: "stream", stream, reader}
    detailsKey: null,
    clockSkew: 0, // server clock minus ours (s)
  };

  // ------------------------------------------------------------------ helpers

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, parent, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text != null) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function sv(tag, attrs, parent, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text != null) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  // Make an SVG group clickable, and usable from the keyboard (Tab, then Enter).
  function clickable(group, label, action) {
    group.setAttribute("tabindex", "0");
    group.setAttribute("role", "button");
    group.setAttribute("aria-label", label);
    group.addEventListener("click", action);
    group.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        action();
      }
    });
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  const measure = document.createElement("canvas").getContext("2d");
  let fontFamily = "sans-serif";

  function textWidth(text, px, weight) {
    measure.font = `${weight || 400} ${px}px ${fontFamily}`;
    return measure.measureText(text).width;
  }

  function compact(n) {
    for (const [size, unit] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
      if (n >= size) {
        const v = n / size;
        return (v < 100 ? v.toFixed(1) : Math.round(v).toString()) + unit;
      }
    }
    return String(n);
  }

  function fmtCount(n) {
    if (n == null) return "–";
    return n < 1e6 ? n.toLocaleString("en-US") : compact(n);
  }

  function fmtRate(rate) {
    if (rate == null) return "–/s";
    if (rate < 10) return `${rate.toFixed(1)}/s`;
    if (rate < 1000) return `${Math.round(rate)}/s`;
    return `${compact(rate)}/s`;
  }

  function fmtDateTime(t) {
    if (t == null) return "–";
    const date = new Date(t * 1000);
    const time = date.toLocaleTimeString([], { hour12: false });
    return date.toDateString() === new Date().toDateString()
      ? time
      : `${date.toLocaleDateString()} ${time}`;
  }

  function fmtDuration(seconds) {
    if (seconds == null || !isFinite(seconds)) return "–";
    if (seconds < 0) seconds = 0;
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min ${Math.floor(seconds % 60)} s`;
    return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  const serverNow = () => Date.now() / 1000 + state.clockSkew;

  function stateColors(name) {
    return (state.meta && state.meta.state_colors[name]) || DEFAULT_COLORS;
  }

  function runColors(status) {
    return (state.meta && state.meta.run_status_colors[status]) || DEFAULT_COLORS;
  }

  function paintBadge(node, text, colors) {
    node.textContent = text;
    node.style.background = colors[0];
    node.style.borderColor = colors[1];
    node.style.color = colors[1];
  }

  async function getJSON(path) {
    const response = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) {
      const error = new Error((body && body.error) || `${response.status} ${response.statusText}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function setConnection(ok, message) {
    const node = $("connection");
    node.dataset.connected = ok ? "yes" : "no";
    node.textContent = ok ? "connected" : `cannot reach the server: ${message}`;
  }

  // ---------------------------------------------------------------- runs list

  async function loadMeta() {
    if (state.meta) return;
    state.meta = await getJSON("api/meta");
    state.clockSkew = state.meta.time - Date.now() / 1000;
    renderLegend();
  }

  async function refreshRuns() {
    try {
      await loadMeta();
      const data = await getJSON("api/runs");
      state.runs = data.runs;
      setConnection(true);
      renderRuns(data.total);
      if (state.runId == null && state.runs.length) selectRun(state.runs[0].id, false);
    } catch (err) {
      setConnection(false, err.message);
    } finally {
      setTimeout(refreshRuns, RUNS_EVERY_MS);
    }
  }

  function renderRuns(total) {
    const list = $("runs");
    clear(list);
    $("runs-empty").hidden = state.runs.length > 0;
    if (state.runId == null) {
      $("run-placeholder").textContent = state.runs.length ? "Pick a run on the left." : "No run to show yet.";
    }
    $("runs-count").textContent = total ? `(${total})` : "";
    for (const run of state.runs) {
      const item = el("li", { "data-run-id": run.id, "data-status": run.status }, list);
      if (run.id === state.runId) item.classList.add("selected");
      const button = el("button", { type: "button", title: run.error || run.id }, item);
      const dot = el("span", { class: "dot" }, button);
      const [fill, stroke] = runColors(run.status);
      dot.style.background = fill;
      dot.style.borderColor = stroke;
      el("span", { class: "run-id" }, button, run.id.slice(0, 12));
      el("span", { class: "run-meta" }, button, `${run.status} · ${fmtDateTime(run.created)}`);
      button.addEventListener("click", () => selectRun(run.id, true));
    }
  }

  function runFromHash() {
    const match = /^#run=(.+)$/.exec(location.hash);
    return match ? decodeURIComponent(match[1]) : null;
  }

  // ------------------------------------------------------------ one run, live

  function selectRun(id, remember) {
    if (id === state.runId) return;
    stopUpdates();
    state.runId = id;
    state.detail = null;
    state.view = null;
    state.selected = null;
    if (remember) history.replaceState(null, "", `#run=${encodeURIComponent(id)}`);
    for (const item of $("runs").children) {
      item.classList.toggle("selected", item.dataset.runId === id);
    }
    $("run-placeholder").hidden = true;
    $("run").hidden = false;
    $("run-id").textContent = id;
    $("run-status").textContent = "";
    clear($("run-facts"));
    clear($("graph"));
    $("run-error").hidden = true;
    renderDetails();
    startUpdates(id);
  }

  function runPath(id) {
    return `api/runs/${encodeURIComponent(id)}`;
  }

  function startUpdates(id) {
    if (typeof EventSource !== "function") {
      poll(id);
      return;
    }
    const source = new EventSource(`${runPath(id)}/events`);
    state.source = source;
    source.addEventListener("snapshot", (event) => {
      if (state.runId !== id) return;
      setConnection(true);
      showDetail(JSON.parse(event.data));
    });
    source.addEventListener("failure", (event) => {
      if (state.runId === id) showRunError(JSON.parse(event.data).error);
    });
    source.addEventListener("end", () => {
      source.close();
      if (state.source === source) state.source = null;
    });
    source.onerror = () => {
      // A dropped stream reconnects by itself; a refused one (an unknown run, a
      // proxy that does not pass event streams) falls back to polling.
      if (state.source === source && source.readyState === EventSource.CLOSED) {
        state.source = null;
        poll(id);
      }
    };
  }

  async function poll(id) {
    if (state.runId !== id) return;
    try {
      const detail = await getJSON(runPath(id));
      if (state.runId !== id) return;
      setConnection(true);
      showDetail(detail);
      if (detail.finished) return;
    } catch (err) {
      if (state.runId !== id) return;
      if (err.status === 404 || err.status === 500) {  // gone, or corrupt
        showRunError(err.message);
        return;
      }
      setConnection(false, err.message);
    }
    state.pollTimer = setTimeout(() => poll(id), POLL_EVERY_MS);
  }

  function stopUpdates() {
    if (state.source) state.source.close();
    state.source = null;
    clearTimeout(state.pollTimer);
    state.pollTimer = null;
  }

  function showRunError(message) {
    const node = $("run-error");
    node.textContent = message;
    node.hidden = false;
  }

  function showDetail(detail) {
    state.detail = detail;
    $("run-error").hidden = true;
    const key = JSON.stringify([
      detail.graph.nodes.map((n) => n.id),
      detail.graph.edges.map((e) => [e.stream, e.source, e.target]),
    ]);
    if (!state.view || state.view.key !== key) {
      state.view = drawGraph(detail.graph);
      state.view.key = key;
    }
    updateGraph(detail);
    renderHeader(detail);
    renderDetails();
  }

  function renderHeader(d) {
    // The phase, not the status: "failing" while a failed run's processors run on.
    const phase = d.phase || d.status;
    paintBadge($("run-status"), phase, runColors(phase));
    $("run-status").dataset.status = phase;
    $("run-live").hidden = d.finished;
    const procs = Object.values(d.processors);
    const ends = procs.map((p) => p.ended).filter((t) => t != null);
    const until = d.finished && ends.length ? Math.max(...ends) : d.taken_at;
    const counts = {};
    for (const p of procs) counts[p.state] = (counts[p.state] || 0) + 1;
    const order = Object.keys((state.meta && state.meta.state_colors) || counts);
    const states = order.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`);
    const facts = $("run-facts");
    clear(facts);
    for (const [term, value] of [
      ["started", fmtDateTime(d.created)],
      [d.finished ? "took" : "running for", fmtDuration(d.created == null ? null : until - d.created)],
      ["processors", states.join(" · ") || "none"],
      ["updated", fmtDateTime(d.taken_at)],
    ]) {
      const row = el("div", {}, facts);
      el("dt", {}, row, term);
      el("dd", {}, row, value);
    }
  }

  function renderLegend() {
    const legend = $("legend");
    clear(legend);
    for (const [name, [fill, stroke]] of Object.entries(state.meta.state_colors)) {
      const item = el("span", {}, legend);
      const swatch = el("i", {}, item);
      swatch.style.background = fill;
      swatch.style.borderColor = stroke;
      item.appendChild(document.createTextNode(name));
    }
  }

  // ------------------------------------------------------------------- layout
  //
  // A layered drawing, left to right: flow inputs in the first column, each
  // processor and flow output one column right of the furthest node it reads
  // from. Between two columns of nodes sits a column for edge
  // labels: every edge gets a label box there, just before its target, and a
  // small placeholder in each column it passes, so labels and long edges never
  // overlap nodes. Columns are ordered by the barycentre heuristic (keeping the
  // order with fewest crossings), then each item is placed as close to the mean
  // height of its neighbours as the order and spacing allow.

  function nodeNotes(node) {
    const notes = [];
    if (node.wait) notes.push("waits for inputs");
    if (node.retries) notes.push(`${node.retries} retr${node.retries === 1 ? "y" : "ies"}`);
    return notes.join(", ");
  }

  function nodeSize(node) {
    if (node.kind === "processor") {
      const notes = nodeNotes(node);
      // The longest state line it can show (scaled-out instances aside).
      const attempts = node.retries ? ` · attempt ${node.retries + 1} of ${node.retries + 1}` : "";
      const widths = [textWidth(node.name, 13, 600), textWidth(`cancelled${attempts}`, 12)];
      if (notes) widths.push(textWidth(notes, 11));
      return { w: Math.max(110, Math.max(...widths) + 28), h: notes ? 64 : 48 };
    }
    const w = Math.max(textWidth(node.name, 13, 600), textWidth("flow output", 11)) + 36;
    return { w: Math.max(96, w), h: 44 };
  }

  // An edge's label: the stream, "written N · rate", then for a reader "read N"
  // and "backlog N", for a flow output whether the stream has ended.
  function labelLines(edge) {
    return edge.reader != null ? 4 : 3;
  }

  function labelSize(edge) {
    const widths = EDGE_TEMPLATES.map((t) => textWidth(t, EDGE_FONT));
    widths.push(textWidth(edge.stream, EDGE_FONT, 600));
    return { w: Math.max(...widths) + 16, h: labelLines(edge) * EDGE_LINE + 8 };
  }

  function gapBetween(a, b) {
    if (a.kind === "node" && b.kind === "node") return NODE_GAP;
    if (a.kind === "dummy" || b.kind === "dummy") return DUMMY_GAP;
    return LABEL_GAP;
  }

  // Place a column's items, in their order, as near their desired centres as
  // their heights and gaps allow (least squares: isotonic regression, pool
  // adjacent violators).
  function placeColumn(column, desired) {
    const offsets = [0];
    for (let i = 1; i < column.length; i++) {
      const a = column[i - 1];
      const b = column[i];
      offsets.push(offsets[i - 1] + (a.h + b.h) / 2 + gapBetween(a, b));
    }
    const blocks = [];
    for (let i = 0; i < column.length; i++) {
      blocks.push({ sum: desired[i] - offsets[i], count: 1 });
      while (blocks.length > 1) {
        const b = blocks[blocks.length - 1];
        const a = blocks[blocks.length - 2];
        if (a.sum / a.count <= b.sum / b.count) break;
        a.sum += b.sum;
        a.count += b.count;
        blocks.pop();
      }
    }
    let i = 0;
    for (const block of blocks) {
      const z = block.sum / block.count;
      for (let k = 0; k < block.count; k++, i++) column[i].y = z + offsets[i];
    }
  }

  const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;

  function layout(graph) {
    const byId = new Map(graph.nodes.map((n) => [n.id, n]));
    const sources = new Map(graph.nodes.map((n) => [n.id, []]));
    for (const e of graph.edges) {
      if (byId.has(e.source) && sources.has(e.target)) sources.get(e.target).push(e.source);
    }

    // Columns of nodes (a resolved flow has no cycles; `visiting` guards anyway).
    const layer = new Map();
    const visiting = new Set();
    const layerOf = (id) => {
      if (layer.has(id)) return layer.get(id);
      let value = byId.get(id).kind === "input" ? 0 : 1;
      if (value === 1 && !visiting.has(id)) {
        visiting.add(id);
        for (const s of sources.get(id)) value = Math.max(value, layerOf(s) + 1);
        visiting.delete(id);
      }
      layer.set(id, value);
      return value;
    };
    for (const n of graph.nodes) layerOf(n.id);
    const first = Math.min(...layer.values());

    // Items: nodes in even columns, edge labels and long-edge placeholders between.
    const columns = [];
    const addItem = (item) => {
      item.left = [];
      item.right = [];
      (columns[item.rank] = columns[item.rank] || []).push(item);
      return item;
    };
    const link = (a, b) => {
      a.right.push(b);
      b.left.push(a);
    };
    const nodeItems = new Map();
    for (const n of graph.nodes) {
      const size = nodeSize(n);
      nodeItems.set(n.id, addItem({ kind: "node", node: n, rank: 2 * (layer.get(n.id) - first), w: size.w, h: size.h }));
    }
    const chains = graph.edges.map((edge) => {
      const from = nodeItems.get(edge.source);
      const to = nodeItems.get(edge.target);
      const chain = [];
      let previous = from;
      for (let rank = from.rank + 1; rank < to.rank; rank++) {
        const isLabel = rank === to.rank - 1;
        const size = isLabel ? labelSize(edge) : { w: 0, h: 6 };
        const item = addItem({ kind: isLabel ? "label" : "dummy", rank, w: size.w, h: size.h });
        link(previous, item);
        chain.push(item);
        previous = item;
      }
      link(previous, to);
      return { edge, from, to, chain, label: chain.find((item) => item.kind === "label") };
    });
    for (let r = 0; r < columns.length; r++) columns[r] = columns[r] || [];

    // Order within columns.
    const number = () => columns.forEach((column) => column.forEach((item, i) => (item.pos = i)));
    const crossings = () => {
      let count = 0;
      for (const column of columns) {
        const segments = [];
        for (const item of column) for (const next of item.right) segments.push([item.pos, next.pos]);
        for (let i = 0; i < segments.length; i++) {
          for (let j = i + 1; j < segments.length; j++) {
            if ((segments[i][0] - segments[j][0]) * (segments[i][1] - segments[j][1]) < 0) count++;
          }
        }
      }
      return count;
    };
    const sweep = (rightwards) => {
      const ranks = [...columns.keys()];
      if (!rightwards) ranks.reverse();
      for (const r of ranks) {
        const column = columns[r];
        for (const item of column) {
          const near = rightwards ? item.left : item.right;
          item.key = near.length ? mean(near.map((n) => n.pos)) : item.pos;
        }
        column.sort((a, b) => a.key - b.key || a.pos - b.pos);
        column.forEach((item, i) => (item.pos = i));
      }
    };
    number();
    let best = columns.map((c) => c.slice());
    let fewest = crossings();
    for (let i = 0; i < 16 && fewest > 0; i++) {
      sweep(i % 2 === 0);
      const count = crossings();
      if (count < fewest) {
        fewest = count;
        best = columns.map((c) => c.slice());
      }
    }
    best.forEach((column, r) => (columns[r] = column));
    number();

    // Heights: stack each column, then pull items towards their neighbours.
    for (const column of columns) {
      let y = 0;
      for (const item of column) {
        item.y = y + item.h / 2;
        y += item.h + NODE_GAP;
      }
      for (const item of column) item.y -= y / 2;
    }
    for (let i = 0; i < 12; i++) {
      const order = i % 2 === 0 ? columns : columns.slice().reverse();
      for (const column of order) {
        const desired = column.map((item) => {
          const near = item.left.concat(item.right);
          return near.length ? mean(near.map((n) => n.y)) : item.y;
        });
        placeColumn(column, desired);
      }
    }

    // Widths: each column as wide as its widest item.
    let x = MARGIN;
    for (const column of columns) {
      const w = Math.max(0, ...column.map((item) => item.w));
      for (const item of column) item.x = x + w / 2;
      x += w + RANK_GAP;
    }
    const all = columns.flat();
    const top = Math.min(...all.map((item) => item.y - item.h / 2));
    for (const item of all) item.y += MARGIN - top;
    const height = Math.max(...all.map((item) => item.y + item.h / 2)) + MARGIN;

    const edges = chains.map((c) => {
      const points = [[c.from.x + c.from.w / 2, c.from.y]];
      for (const item of c.chain) {
        if (item.kind === "label") points.push([item.x - item.w / 2, item.y], [item.x + item.w / 2, item.y]);
        else points.push([item.x, item.y]);
      }
      points.push([c.to.x - c.to.w / 2, c.to.y]);
      return { edge: c.edge, points, label: c.label };
    });
    return { width: x - RANK_GAP + MARGIN, height, nodes: [...nodeItems.values()], edges };
  }

  function curve(points) {
    const r = (v) => Math.round(v * 10) / 10;
    let d = `M${r(points[0][0])},${r(points[0][1])}`;
    for (let i = 1; i < points.length; i++) {
      const [x0, y0] = points[i - 1];
      const [x1, y1] = points[i];
      if (Math.abs(y1 - y0) < 0.5) {
        d += ` L${r(x1)},${r(y1)}`;
      } else {
        const mid = (x0 + x1) / 2;
        d += ` C${r(mid)},${r(y0)} ${r(mid)},${r(y1)} ${r(x1)},${r(y1)}`;
      }
    }
    return d;
  }

  // ------------------------------------------------------------------ drawing

  function drawGraph(graph) {
    const svg = $("graph");
    clear(svg);
    fontFamily = getComputedStyle(svg).fontFamily || fontFamily;
    const lay = layout(graph);
    svg.setAttribute("viewBox", `0 0 ${lay.width} ${lay.height}`);
    svg.setAttribute("width", lay.width);
    svg.style.maxWidth = "100%";
    svg.style.minWidth = `${Math.round(lay.width * MIN_SCALE)}px`;
    svg.style.height = "auto";

    const defs = sv("defs", {}, svg);
    for (const kind of ["", "-flowing", "-failed"]) {
      const marker = sv("marker", {
        id: `arrow${kind}`, viewBox: "0 0 10 10", refX: 9, refY: 5,
        markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto",
      }, defs);
      sv("path", { d: "M0,0 L10,5 L0,10 z", class: `arrow${kind ? " arrow" + kind : ""}` }, marker);
    }

    const edgeLayer = sv("g", { class: "edges" }, svg);
    const nodeLayer = sv("g", { class: "nodes" }, svg);
    const view = { nodes: new Map(), edges: [] };

    for (const item of lay.edges) {
      const e = item.edge;
      const group = sv("g", {
        class: "edge",
        "data-stream": e.stream,
        "data-source": e.source,
        "data-target": e.target,
      }, edgeLayer);
      if (e.reader != null) group.setAttribute("data-reader", e.reader);
      const d = curve(item.points);
      sv("path", { class: "hit", d }, group);
      const line = sv("path", { class: "line", d, "marker-end": "url(#arrow)" }, group);
      sv("title", {}, group, `${e.stream}: ${e.writer || "flow input"} → ${e.reader || "flow output"}`);
      const entry = { edge: e, group, line, values: {} };
      if (item.label) {
        const { x, y, w, h } = item.label;
        const left = x - w / 2;
        const top = y - h / 2;
        sv("rect", { class: "label-box", x: left, y: top, width: w, height: h, rx: 5 }, group);
        const lines = [];
        for (let i = 0; i < labelLines(e); i++) {
          lines.push(sv("text", { x: left + 8, y: top + 4 + EDGE_LINE * (i + 1) - 3 }, group));
        }
        sv("tspan", { class: "stream" }, lines[0], e.stream);
        const value = (parent, name, prefix) => {
          if (prefix) sv("tspan", {}, parent, prefix);
          entry.values[name] = sv("tspan", { class: `v-${name}` }, parent, "–");
        };
        value(lines[1], "written", "written ");
        value(lines[1], "rate", " · ");
        if (e.reader != null) {
          value(lines[2], "read", "read ");
          value(lines[3], "backlog", "backlog ");
        } else {
          value(lines[2], "status", "");
        }
      }
      clickable(group, `stream ${e.stream} to ${e.reader || "flow output"}`, () =>
        select({ kind: "stream", stream: e.stream, reader: e.reader }));
      view.edges.push(entry);
    }

    for (const item of lay.nodes) {
      const n = item.node;
      const left = item.x - item.w / 2;
      const top = item.y - item.h / 2;
      const group = sv("g", {
        class: `node ${n.kind}${n.wait ? " wait" : ""}`,
        "data-node-id": n.id,
        "data-name": n.name,
        "data-kind": n.kind,
      }, nodeLayer);
      const rect = sv("rect", {
        x: left, y: top, width: item.w, height: item.h,
        rx: n.kind === "input" ? item.h / 2 : n.kind === "output" ? 4 : 9,
      }, group);
      const notes = n.kind === "processor" ? nodeNotes(n) : "";
      const count = n.kind === "processor" ? (notes ? 3 : 2) : 2;
      const first = item.y - (count * NODE_LINE) / 2 + 13;
      const text = (cls, i, value) => sv("text", { class: cls, x: item.x, y: first + i * NODE_LINE, "text-anchor": "middle" }, group, value);
      text("name", 0, n.name);
      const entry = { node: n, group, rect, stateText: null };
      if (n.kind === "processor") {
        if (notes) text("details", 1, notes);
        entry.stateText = text("state", notes ? 2 : 1, "");
        sv("title", {}, group, `${n.name}: click for details`);
        clickable(group, `processor ${n.name}`, () => select({ kind: "processor", name: n.name }));
      } else {
        text("kind", 1, n.kind === "input" ? "flow input" : "flow output");
        sv("title", {}, group, `stream ${n.name}: click for details`);
        clickable(group, `stream ${n.name}`, () => select({ kind: "stream", stream: n.name, reader: null }));
      }
      view.nodes.set(n.id, entry);
    }
    return view;
  }

  function stateLine(p) {
    let text = p.state;
    if (p.retries > 0 && p.attempt > 0) text += ` · attempt ${p.attempt} of ${p.retries + 1}`;
    else if (p.attempt > 1) text += ` · attempt ${p.attempt}`;
    if (p.instances > 1) text += ` · ×${p.instances}`;
    return text;
  }

  function updateGraph(d) {
    for (const entry of state.view.nodes.values()) {
      if (entry.node.kind !== "processor") continue;
      const p = d.processors[entry.node.name];
      if (!p) continue;
      const [fill, stroke] = stateColors(p.state);
      entry.rect.style.fill = fill;
      entry.rect.style.stroke = stroke;
      entry.stateText.textContent = stateLine(p);
      entry.group.dataset.state = p.state;
      entry.group.dataset.attempt = String(p.attempt);
      entry.group.classList.toggle("failed", p.state === "failed");
    }
    for (const entry of state.view.edges) {
      const s = d.streams[entry.edge.stream];
      if (!s) continue;
      const reader = entry.edge.reader;
      const read = reader != null ? s.read[reader] || 0 : null;
      const flowing = !d.finished && !s.ended && !s.failed && (s.rate || 0) > 0;
      entry.group.classList.toggle("flowing", flowing);
      entry.group.classList.toggle("failed", s.failed);
      entry.group.dataset.written = String(s.written);
      if (read != null) {
        entry.group.dataset.read = String(read);
        entry.group.dataset.backlog = String(s.written - read);
      }
      const arrow = s.failed ? "arrow-failed" : flowing ? "arrow-flowing" : "arrow";
      entry.line.setAttribute("marker-end", `url(#${arrow})`);
      const v = entry.values;
      if (!v.written) continue; // no label (cannot happen for a resolved flow)
      v.written.textContent = fmtCount(s.written);
      if (v.read) v.read.textContent = fmtCount(read);
      if (v.backlog) {
        // Highlighted where data piles up before a reader at work: not before one
        // that waits for complete inputs or has finished, nor on a flow input (a
        // reader may take just its first value).
        const readerState = d.processors[reader] ? d.processors[reader].state : null;
        const piling = s.producer != null && ["running", "retrying"].includes(readerState);
        v.backlog.textContent = fmtCount(s.written - read);
        v.backlog.classList.toggle("warn", piling && s.written - read > 0);
      }
      v.rate.textContent = fmtRate(s.rate);
      if (v.status) v.status.textContent = s.failed ? "failed" : s.ended ? "ended" : "open";
    }
    markSelection();
  }

  // ------------------------------------------------------------------ details

  function select(what) {
    state.selected = what;
    state.detailsKey = null;
    renderDetails();
    markSelection();
  }

  function markSelection() {
    if (!state.view) return;
    const sel = state.selected;
    for (const entry of state.view.nodes.values()) {
      const n = entry.node;
      const on = sel != null && (sel.kind === "processor"
        ? n.kind === "processor" && n.name === sel.name
        : n.kind !== "processor" && n.name === sel.stream);
      entry.group.classList.toggle("selected", on);
    }
    for (const entry of state.view.edges) {
      const on = sel != null && sel.kind === "stream" && entry.edge.stream === sel.stream
        && (sel.reader == null || entry.edge.reader === sel.reader);
      entry.group.classList.toggle("selected", on);
    }
  }

  function table(parent, rows) {
    const t = el("table", {}, parent);
    for (const [head, value, cls] of rows) {
      const row = el("tr", {}, t);
      el("th", { scope: "row" }, row, head);
      el("td", cls ? { class: cls } : {}, row, value);
    }
    return t;
  }

  function renderDetails() {
    const box = $("details");
    const sel = state.selected;
    const d = state.detail;
    if (!sel || !d) {
      box.hidden = true;
      state.detailsKey = null;
      return;
    }
    const item = sel.kind === "processor" ? d.processors[sel.name] : d.streams[sel.stream];
    if (!item) {
      box.hidden = true;
      return;
    }
    // Rebuilt only when something shown changed: keeps a scrolled traceback still.
    const running = sel.kind === "processor" && item.started != null && item.ended == null;
    const key = JSON.stringify([sel, item, running ? Math.floor(serverNow()) : 0]);
    box.hidden = false;
    if (key === state.detailsKey) return;
    state.detailsKey = key;
    const body = $("details-body");
    clear(body);
    body.dataset.kind = sel.kind;
    if (sel.kind === "processor") processorDetails(body, item);
    else streamDetails(body, item);
  }

  function processorDetails(body, p) {
    const title = el("h3", {}, body, `${p.name} `);
    const badge = el("span", { class: "badge" }, title);
    paintBadge(badge, p.state, stateColors(p.state));
    const end = p.ended != null ? p.ended : p.started != null ? serverNow() : null;
    table(body, [
      ["state", stateLine(p)],
      ["attempt", p.retries ? `${p.attempt} of ${p.retries + 1}` : String(p.attempt)],
      ["instances", String(p.instances)],
      ["starts", p.wait ? "once its inputs are complete" : "at once, streaming"],
      ["started", fmtDateTime(p.started)],
      ["ended", fmtDateTime(p.ended)],
      ["ran for", p.started != null ? fmtDuration(end - p.started) : "–"],
      ["reads", p.inputs.join(", ") || "–"],
      ["writes", p.outputs.join(", ") || "–"],
    ]);
    if (p.error) {
      el("h4", {}, body, p.state === "cancelled" ? "Cancelled" : "Error");
      el("p", { class: "error" }, body, p.error);
    }
    if (p.traceback) {
      el("h4", {}, body, "Traceback");
      el("pre", { class: "traceback" }, body, p.traceback);
    }
  }

  function streamDetails(body, s) {
    el("h3", {}, body, s.name);
    const producer = s.producer != null ? state.detail.processors[s.producer] : null;
    let average = null;
    if (producer && producer.started != null) {
      const until = producer.ended != null ? producer.ended : state.detail.taken_at;
      if (until > producer.started) average = s.written / (until - producer.started);
    }
    table(body, [
      ["written by", s.producer || "(flow input)"],
      ["written", fmtCount(s.written), "num"],
      ["rate now", fmtRate(s.rate), "num"],
      ["average rate", average == null ? "–" : fmtRate(average), "num"],
      ["backlog", `${fmtCount(s.backlog)} (slowest reader)`, "num"],
      ["state", s.failed ? "failed" : s.ended ? "ended" : "open"],
    ]);
    el("h4", {}, body, "Readers");
    if (!s.readers.length) {
      el("p", { class: "muted" }, body, "None: a flow output.");
      return;
    }
    table(body, s.readers.map((r) => [r, `read ${fmtCount(s.read[r])} · backlog ${fmtCount(s.written - s.read[r])}`, "num"]));
  }

  // --------------------------------------------------------------------- start

  $("details-close").addEventListener("click", () => select(null));
  window.addEventListener("hashchange", () => {
    const id = runFromHash();
    if (id && id !== state.runId) selectRun(id, false);
  });
  const initial = runFromHash();
  loadMeta()
    .catch(() => null)
    .then(() => {
      if (initial) selectRun(initial, false);
      refreshRuns();
    });
})();
