"""The dashboard's HTML + JS, kept in a module so the wheel (and the container) carries it.

Hand-drawn SVG: price (10 s bar closes) with its Bollinger band, alerts marked on the price,
and the ensemble score under it with the alert threshold. Polls the worker every 2 s.
Everything user-visible is set with ``textContent`` (no HTML injection from data).
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CryptoTrace dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<style>
 body{font:13px system-ui,sans-serif;margin:0;background:#0f1419;color:#d8dee4}
 header{padding:8px 14px;background:#161d25;display:flex;gap:16px;align-items:baseline}
 h1{font-size:16px;margin:0} #status{color:#8a96a3}
 main{display:grid;grid-template-columns:330px 1fr 330px;gap:10px;padding:10px}
 section{background:#161d25;border-radius:6px;padding:8px;overflow:auto;max-height:88vh}
 h2{font-size:13px;margin:2px 0 8px;color:#8a96a3;text-transform:uppercase}
 table{border-collapse:collapse;width:100%} td,th{padding:3px 5px;text-align:right}
 td:first-child,th:first-child{text-align:left} tr.sym{cursor:pointer} tr.sym:hover,tr.sel{background:#243040}
 .active{color:#ff6b6b;font-weight:bold} .quiet{color:#6c7a89}
 .sev-low{color:#f0c674}.sev-medium{color:#f5a35b}.sev-high{color:#ff6b6b}.sev-critical{color:#ff2d55}
 #alerts{list-style:none;margin:0;padding:0} #alerts li{padding:5px;border-bottom:1px solid #243040}
 #alerts li.is-active{background:#2a1a1f} svg{width:100%;background:#0f1419}
 .axis{fill:#6c7a89;font-size:10px} .grid{stroke:#1f2a36}
</style></head>
<body>
<header><h1>CryptoTrace</h1><span id="status">loading...</span></header>
<main>
 <section><h2>Symbols</h2>
  <table id="symbols"><thead><tr><th>symbol</th><th>price</th><th>score</th><th>state</th></tr></thead>
  <tbody></tbody></table></section>
 <section><h2 id="chart-title">Price, Bollinger band, alerts</h2>
  <svg id="price-chart" viewBox="0 0 800 320" preserveAspectRatio="none"></svg>
  <h2>Ensemble score</h2>
  <svg id="score-chart" viewBox="0 0 800 140" preserveAspectRatio="none"></svg>
  <div id="indicators"></div></section>
 <section><h2>Alerts (active first)</h2><ul id="alerts"></ul></section>
</main>
<script>
"use strict";
const NS = "http://www.w3.org/2000/svg";
let selected = new URLSearchParams(location.search).get("symbol");
let symbolsState = {};

function el(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function fmt(x, d) { return x === null || x === undefined ? "-" : Number(x).toPrecision(d || 6); }
function time(ms) { return new Date(ms).toISOString().slice(11, 19); }
async function getJSON(path) {
  const r = await fetch(path, {cache: "no-store"});
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

function renderSymbols(rows) {
  const body = document.querySelector("#symbols tbody");
  body.replaceChildren();
  symbolsState = {};
  for (const s of rows) {
    symbolsState[s.symbol] = s;
    const tr = document.createElement("tr");
    tr.className = "sym" + (s.symbol === selected ? " sel" : "");
    tr.dataset.symbol = s.symbol;
    for (const [v, cls] of [[s.symbol, ""], [fmt(s.last_price), ""], [fmt(s.score, 3), "sev-" + s.severity],
                            [s.alert_state, s.alert_state]]) {
      const td = document.createElement("td"); td.textContent = v; if (cls) td.className = cls; tr.appendChild(td);
    }
    tr.onclick = () => { selected = s.symbol; refresh(); };
    body.appendChild(tr);
  }
}

function renderAlerts(alerts) {
  const ul = document.getElementById("alerts");
  ul.replaceChildren();
  const isActive = a => (symbolsState[a.symbol] || {}).alert_state === "active"
                        && symbolsState[a.symbol].last_alert_ms === a.event_time;
  const sorted = alerts.slice().sort((a, b) => (isActive(b) - isActive(a)) || (b.event_time - a.event_time));
  for (const a of sorted) {
    const li = document.createElement("li");
    li.className = "alert-item" + (isActive(a) ? " is-active" : "");
    li.dataset.alertId = a.alert_id;
    const head = document.createElement("div");
    const sev = document.createElement("span"); sev.className = "sev-" + a.severity; sev.textContent = a.severity;
    head.append(sev, " " + a.symbol + " " + time(a.event_time) + " score " + fmt(a.score, 3));
    const why = document.createElement("div"); why.className = "quiet";
    why.textContent = a.rule + " | " + (a.top_features || []).slice(0, 2).map(f => f.feature + " z=" + f.z).join(", ");
    li.append(head, why);
    li.onclick = () => { selected = a.symbol; refresh(); };
    ul.appendChild(li);
  }
}

function scale(lo, hi, a, b) { const k = hi > lo ? (b - a) / (hi - lo) : 0; return v => a + (v - lo) * k; }
function line(pts) { return pts.map((p, i) => (i ? "L" : "M") + p[0].toFixed(1) + "," + p[1].toFixed(1)).join(""); }

function renderChart(series) {
  const byTime = new Map();
  for (const p of series.points) byTime.set(p[0], p);  // a takeover may repeat a bar: keep the last
  const pts = [...byTime.values()].sort((a, b) => a[0] - b[0]);
  const price = document.getElementById("price-chart"), score = document.getElementById("score-chart");
  price.replaceChildren(); score.replaceChildren();
  price.dataset.points = pts.length;
  if (!pts.length) return;
  const t0 = pts[0][0], t1 = Math.max(pts[pts.length - 1][0], t0 + 1);
  const alerts = series.alerts.filter(a => a.event_time >= t0 && a.event_time <= t1 + 10000);
  const ys = pts.flatMap(p => [p[1], p[4], p[5]]).concat(alerts.map(a => a.price)).filter(v => v !== null);
  let lo = Math.min(...ys), hi = Math.max(...ys); const pad = (hi - lo) * 0.08 || hi * 0.001 || 1;
  lo -= pad; hi += pad;
  const X = scale(t0, t1, 50, 790), Y = scale(lo, hi, 305, 10), S = scale(0, 1, 130, 8);
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4;
    price.append(el("line", {x1: 50, x2: 790, y1: Y(v), y2: Y(v), class: "grid"}),
                 el("text", {x: 2, y: Y(v) + 3, class: "axis"}, fmt(v, 5)));
  }
  price.append(el("text", {x: 50, y: 318, class: "axis"}, time(t0)),
               el("text", {x: 740, y: 318, class: "axis"}, time(t1)));
  const banded = pts.filter(p => p[4] !== null && p[5] !== null);
  if (banded.length > 1) {
    const upper = banded.map(p => [X(p[0]), Y(p[5])]), lower = banded.map(p => [X(p[0]), Y(p[4])]).reverse();
    price.append(el("path", {d: line(upper.concat(lower)) + "Z", fill: "#2f6fed", "fill-opacity": 0.15,
                             class: "band band-fill"}),
                 el("path", {d: line(banded.map(p => [X(p[0]), Y(p[3])])), fill: "none", stroke: "#5b8def",
                             "stroke-dasharray": "4 3", class: "band band-mid"}));
  }
  price.dataset.banded = banded.length;
  price.append(el("path", {d: line(pts.map(p => [X(p[0]), Y(p[1])])), fill: "none", stroke: "#e6edf3",
                           "stroke-width": 1.5, class: "price"}));
  const colors = {low: "#f0c674", medium: "#f5a35b", high: "#ff6b6b", critical: "#ff2d55"};
  for (const a of alerts) {
    const c = el("circle", {cx: X(a.event_time), cy: Y(a.price), r: 6, fill: colors[a.severity] || "#ff6b6b",
                            stroke: "#fff", class: "alert-marker"});
    c.append(el("title", {}, a.severity + " " + a.rule + " @ " + time(a.event_time)));
    price.append(c);
    score.append(el("line", {x1: X(a.event_time), x2: X(a.event_time), y1: 8, y2: 130,
                             stroke: colors[a.severity] || "#ff6b6b", class: "alert-line"}));
  }
  price.dataset.alerts = alerts.length;
  const thr = series.summary.threshold;
  score.append(el("line", {x1: 50, x2: 790, y1: S(thr), y2: S(thr), stroke: "#ff6b6b", "stroke-dasharray": "5 4",
                           class: "threshold"}),
               el("text", {x: 2, y: S(thr) + 3, class: "axis"}, "thr " + thr),
               el("path", {d: line(pts.map(p => [X(p[0]), S(p[2] || 0)])), fill: "none", stroke: "#7ee787",
                           class: "score"}));
  const ind = series.summary.indicators || {}, mem = series.summary.members || {};
  document.getElementById("indicators").textContent =
    Object.entries(ind).map(([k, v]) => k + " " + fmt(v, 4)).join("  ") + "  |  members: " +
    Object.entries(mem).map(([k, v]) => k + " " + fmt(v, 3)).join("  ");
}

async function refresh() {
  try {
    const syms = await getJSON("/symbols");
    const rows = syms.symbols;
    if (!selected && rows.length) selected = rows.slice().sort((a, b) => b.alerts - a.alerts)[0].symbol;
    renderSymbols(rows);
    renderAlerts((await getJSON("/alerts?limit=50")).alerts);
    if (selected) {
      document.getElementById("chart-title").textContent = selected + ": price, Bollinger band, alerts";
      renderChart(await getJSON("/dashboard/series/" + encodeURIComponent(selected)));
    }
    document.getElementById("status").textContent =
      rows.length + " symbols, source " + syms.source + ", updated " + new Date().toLocaleTimeString();
    document.body.dataset.ready = "1";
  } catch (err) {
    document.getElementById("status").textContent = "error: " + err.message;
  }
}
refresh();
setInterval(refresh, 2000);
</script></body></html>
"""
