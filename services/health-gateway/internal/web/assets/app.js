// The status page: fetches /api/v1/cluster periodically and redraws. No framework, no CDN: every
// value from the API goes into the page as text, never as markup.
"use strict";

const api = "api/v1/cluster";
let timer = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function age(seconds) {
  if (seconds < 1) return Math.round(seconds * 1000) + " ms ago";
  if (seconds < 120) return seconds.toFixed(1) + " s ago";
  return Math.round(seconds / 60) + " min ago";
}

function lag(seconds) {
  if (!seconds) return "0 s";
  return seconds < 120 ? seconds.toFixed(1) + " s" : Math.round(seconds / 60) + " min";
}

function badge(status, pending) {
  return el("span", { class: "badge " + status + (pending ? " pending" : ""), title: pending ? "changing: waiting for the damping time" : "" }, status);
}

function drawOverall(c) {
  const o = document.getElementById("overall");
  o.className = "badge " + c.status;
  o.textContent = c.status === "green" ? "green" : "red";
  document.getElementById("reason").textContent = c.reason;
}

function drawMembers(c) {
  const body = document.querySelector("#members tbody");
  body.replaceChildren(...c.members.map((m) => el("tr", { "data-replica": m.replica_id, class: m.status },
    el("td", {}, m.replica_id),
    el("td", {}, m.kind),
    el("td", { class: "status" }, badge(m.status, m.pending)),
    el("td", {}, age(m.heartbeat_age_seconds) + (m.up ? "" : " (down)")),
    el("td", {}, m.address || ""),
    el("td", {}, m.version || ""),
    el("td", {}, m.clients),
    el("td", {}, m.msgs_in_per_s.toFixed(1)),
    el("td", {}, m.msgs_out_per_s.toFixed(1)),
    el("td", {}, !m.up ? "unknown (down)" : m.redis.connected ? "connected" : "down"),
    el("td", {}, m.probe_connected === undefined ? "" : (m.probe_connected ? "connected" : "down")),
    el("td", { class: "problem" }, m.problem || m.probe_error || ""),
  )));
}

function drawMatrix(c) {
  const brokers = [...new Set(c.pairs.flatMap((p) => [p.from, p.to]))].sort();
  const byKey = new Map(c.pairs.map((p) => [p.from + "->" + p.to, p]));
  const t = document.getElementById("matrix");
  const head = el("tr", {}, el("th", {}, "from \\ to"), ...brokers.map((b) => el("th", { class: "to" }, b)));
  const rows = brokers.map((from) => el("tr", {}, el("th", {}, from), ...brokers.map((to) => {
    const p = byKey.get(from + "->" + to);
    if (!p) return el("td", { class: "cell none" }, "·");
    const text = !p.probed ? "…" : p.ok ? p.latency_ms.toFixed(1) + " ms" : "lost";
    return el("td", {
      class: "cell " + p.status + (p.pending ? " pending" : ""), "data-pair": from + "->" + to,
      title: p.error || (p.status + " since " + p.since),
    }, text);
  })));
  t.replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  if (brokers.length === 0) t.replaceChildren(el("caption", { class: "muted" }, "No broker to probe yet."));
}

function sparkline(p) {
  const w = 240, h = 48, pad = 4, n = 60;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  const pts = p.history;
  const max = Math.max(1, ...pts.filter((x) => x.ok).map((x) => x.ms));
  const x = (i) => pad + (w - 2 * pad) * (i + n - pts.length) / (n - 1);
  const y = (ms) => h - pad - (h - 2 * pad) * ms / max;
  // One polyline per run of successful probes: a lost probe breaks the line and is a red dot.
  const runs = [[]];
  pts.forEach((pt, i) => {
    if (pt.ok) {
      runs[runs.length - 1].push(x(i).toFixed(1) + "," + y(pt.ms).toFixed(1));
      return;
    }
    runs.push([]);
    const d = document.createElementNS(ns, "circle");
    d.setAttribute("cx", x(i));
    d.setAttribute("cy", h - pad);
    d.setAttribute("r", 3);
    d.setAttribute("fill", "#cf222e");
    svg.append(d);
  });
  for (const run of runs.filter((r) => r.length > 0)) {
    const pl = document.createElementNS(ns, "polyline");
    pl.setAttribute("points", run.length === 1 ? run[0] + " " + run[0] : run.join(" "));
    pl.setAttribute("fill", "none");
    pl.setAttribute("stroke", "#0969da");
    pl.setAttribute("stroke-width", "1.5");
    pl.setAttribute("stroke-linecap", "round");
    svg.append(pl);
  }
  const okMs = pts.filter((x) => x.ok).map((x) => x.ms);
  const last = p.probed ? (p.ok ? p.latency_ms.toFixed(2) + " ms" : "lost") : "not probed yet";
  const title = el("div", { class: "label " + p.status }, p.from + " → " + p.to + ": " + last);
  const scale = el("div", { class: "muted" }, okMs.length ? "max " + max.toFixed(2) + " ms" : "no successful probe");
  return el("div", { class: "spark", "data-pair": p.from + "->" + p.to }, title, svg, scale);
}

function drawAdapters(c) {
  const body = document.querySelector("#adapters tbody");
  body.replaceChildren(...c.adapters.map((a) => el("tr", { "data-replica": a.replica_id },
    el("td", {}, a.replica_id), el("td", {}, badge(a.status, false)), el("td", {}, lag(a.export_lag_seconds)),
    el("td", {}, a.export_lag), el("td", {}, age(a.heartbeat_age_ms / 1000)))));
  document.getElementById("no-adapters").hidden = c.adapters.length > 0;
}

function drawGateway(c) {
  const g = c.gateway;
  document.getElementById("gateway").textContent =
    "gateway " + g.id + " · Redis " + (g.redis.connected ? "connected" : "DOWN") +
    " · probe every " + g.probe_interval_ms + " ms (timeout " + g.probe_timeout_ms + " ms) · red after " +
    g.fail_after_ms + " ms of failure, green after " + g.recover_after_ms + " ms of health · " +
    g.probe_rounds + " rounds · updated " + new Date(c.generated_at).toLocaleTimeString();
}

async function refresh() {
  let next = 2000;
  try {
    const r = await fetch(api, { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const c = await r.json();
    drawOverall(c);
    drawMembers(c);
    drawMatrix(c);
    drawAdapters(c);
    document.getElementById("sparklines").replaceChildren(...c.pairs.map(sparkline));
    drawGateway(c);
    document.getElementById("stale").hidden = true;
    document.body.dataset.updated = c.generated_at;
    next = Math.min(2000, Math.max(200, c.gateway.probe_interval_ms));
  } catch (e) {
    const s = document.getElementById("stale");
    s.textContent = "The gateway does not answer (" + e.message + "); the data below is old.";
    s.hidden = false;
  }
  timer = setTimeout(refresh, next);
}

refresh();
