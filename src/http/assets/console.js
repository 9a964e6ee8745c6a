// The delayd console: plain JavaScript over the JSON API (/api/), no build
// step. Hash routes: #/ (overview), #/queues, #/queue/<name>, #/find.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const main = $("#main");
let csrf = null;
let timer = null;

// ---------------------------------------------------------------- helpers

function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false && v != null) el.setAttribute(k, v);
  }
  for (const k of kids.flat()) el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return el;
}

const enc = encodeURIComponent;
const fmtInt = (n) => (n == null ? "–" : Number(n).toLocaleString("en-US"));

function fmtDur(ms) {
  if (ms == null) return "–";
  const s = Math.abs(ms) / 1000;
  if (s < 1) return Math.round(Math.abs(ms)) + " ms";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return Math.floor(s / 60) + "m " + Math.floor(s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}

function fmtUs(us) {
  if (us == null) return "–";
  if (us < 1000) return us + " µs";
  if (us < 1e6) return (us / 1000).toFixed(us < 1e4 ? 1 : 0) + " ms";
  return (us / 1e6).toFixed(1) + " s";
}

function fmtBytes(b) {
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : b) + " " + u[i];
}

function fmtTime(ms) {
  if (ms == null) return "–";
  const d = new Date(ms);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function relTime(ms) {
  if (ms == null) return "";
  const d = ms - Date.now();
  return d >= 0 ? "in " + fmtDur(d) : fmtDur(-d) + " ago";
}

function toast(msg, bad = false) {
  const t = $("#toast");
  t.textContent = msg;
  t.className = "toast" + (bad ? " bad" : "");
  t.hidden = false;
  clearTimeout(toast.t);
  toast.t = setTimeout(() => (t.hidden = true), 3500);
}

class ApiError extends Error {
  constructor(status, msg) { super(msg); this.status = status; }
}

async function api(path, opts = {}) {
  const headers = { "X-Delayd-Console": "1" };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  if (opts.method && opts.method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const r = await fetch("/api/" + path, {
    method: opts.method || "GET",
    headers,
    body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
    credentials: "same-origin",
  });
  let data = null;
  try { data = await r.json(); } catch (_) { /* empty body */ }
  if (r.status === 401) { showLogin(); throw new ApiError(401, "log in first"); }
  if (!r.ok) throw new ApiError(r.status, (data && data.error) || r.statusText);
  return data;
}

// ----------------------------------------------------------------- charts

const NS = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text != null) el.textContent = text;
  return el;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const e = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * e >= v) return m * e;
  return 10 * e;
}

// A line chart: series [{name, color, values:[number|null]}], xLabels
// [string] (a few are shown), fmt for the y axis.
// Narrow screens get a narrower drawing, so its text stays readable.
// A chart across the page (wide) gets a wider one, for the same reason.
const chartWidth = (wide) => (window.innerWidth < 600 ? 400 : wide ? 1100 : 560);

function lineChart(series, { xLabels = [], fmt = fmtInt, height = 200, yTitle = "" } = {}) {
  const W = chartWidth(), H = height, L = 56, R = 10, T = 14, B = 24;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img" });
  const n = Math.max(...series.map((x) => x.values.length), 2);
  const max = niceMax(Math.max(0, ...series.flatMap((x) => x.values.filter((v) => v != null))));
  const X = (i) => L + ((W - L - R) * i) / (n - 1);
  const Y = (v) => T + (H - T - B) * (1 - v / max);
  const g = s("g", { class: "grid" });
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    g.append(s("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v) }));
    svg.append(s("text", { x: L - 6, y: Y(v) + 4, "text-anchor": "end" }, fmt(v)));
  }
  svg.prepend(g);
  if (yTitle) svg.append(s("text", { x: L, y: 10 }, yTitle));
  svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  const every = Math.max(1, Math.ceil(xLabels.length / (W < 500 ? 3 : 5)));
  xLabels.forEach((lab, i) => {
    if (i % every === 0 || i === xLabels.length - 1)
      svg.append(s("text", { x: X(i), y: H - 6, "text-anchor": i === 0 ? "start" : i === xLabels.length - 1 ? "end" : "middle" }, lab));
  });
  for (const ser of series) {
    let d = "", pen = false;
    ser.values.forEach((v, i) => {
      if (v == null) { pen = false; return; }
      d += (pen ? "L" : "M") + X(i).toFixed(1) + " " + Y(v).toFixed(1);
      pen = true;
    });
    svg.append(s("path", { d, fill: "none", stroke: ser.color, "stroke-width": 2, "stroke-linejoin": "round" }));
    // Lone points (between gaps) as dots.
    ser.values.forEach((v, i) => {
      if (v != null && ser.values[i - 1] == null && ser.values[i + 1] == null)
        svg.append(s("circle", { cx: X(i), cy: Y(v), r: 2.5, fill: ser.color }));
    });
  }
  return svg;
}

// A bar chart: labels [string], values [number].
function barChart(labels, values, { color = "#2457c5", height = 200, fmt = fmtInt, yTitle = "", tip, wide = false } = {}) {
  const W = chartWidth(wide), H = height, L = 56, R = 10, T = 14, B = 24;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img" });
  const n = Math.max(values.length, 1);
  const max = niceMax(Math.max(0, ...values));
  const bw = (W - L - R) / n;
  const Y = (v) => T + (H - T - B) * (1 - v / max);
  const g = s("g", { class: "grid" });
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    g.append(s("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v) }));
    svg.append(s("text", { x: L - 6, y: Y(v) + 4, "text-anchor": "end" }, fmt(v)));
  }
  svg.append(g);
  if (yTitle) svg.append(s("text", { x: L, y: 10 }, yTitle));
  values.forEach((v, i) => {
    const r = s("rect", { x: L + i * bw + bw * 0.1, y: Y(v), width: Math.max(bw * 0.8, 1), height: Math.max(Y(0) - Y(v), 0), fill: color });
    r.append(s("title", {}, (tip ? tip(i) : labels[i]) + ": " + fmtInt(v)));
    svg.append(r);
  });
  svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  const every = Math.max(1, Math.ceil(labels.length / (W < 500 ? 4 : W > 800 ? 12 : 6)));
  labels.forEach((lab, i) => {
    if (i % every === 0) svg.append(s("text", { x: L + i * bw + bw / 2, y: H - 6, "text-anchor": "middle" }, lab));
  });
  return svg;
}

function legend(items) {
  return h("div", { class: "legend" }, items.map(([name, color]) => h("span", {}, h("i", { style: `background:${color}` }), name)));
}

function stat(label, value, sub, cls = "") {
  return h("div", { class: "card stat" }, h("div", { class: "label" }, label), h("div", { class: "value " + cls }, value), sub ? h("div", { class: "sub" }, sub) : "");
}

// --------------------------------------------------------------- overview

const HISTORY = 120;
const hist = { t: [], added: [], popped: [], acked: [], p50: [], p99: [], prev: null };

// The quantile of the firings between two cumulative histograms: the upper
// bound of the bucket holding it (as INFO's delay_lateness_p*_us), capped
// by the maximum; null when nothing fired in between.
function quantileBetween(prev, cur, q) {
  const d = cur.buckets.map((c, i) => c - (prev ? prev.buckets[i] : 0));
  const n = d.reduce((a, b) => a + b, 0);
  if (n <= 0) return null;
  const rank = Math.max(1, Math.ceil(n * q));
  let seen = 0;
  for (let i = 0; i < d.length; i++) {
    seen += d[i];
    if (seen >= rank) return Math.min(i < cur.bounds_us.length ? cur.bounds_us[i] : cur.max_us, cur.max_us);
  }
  return cur.max_us;
}

function sample(o) {
  const p = hist.prev;
  if (p) {
    const dt = (o.uptime_s - p.uptime_s) || 1;
    const rate = (k) => Math.max(0, (o[k] - p[k]) / dt);
    hist.t.push(o.now_ms);
    hist.added.push(rate("added"));
    hist.popped.push(rate("popped"));
    hist.acked.push(rate("acked"));
    hist.p50.push(quantileBetween(p.lateness, o.lateness, 0.5));
    hist.p99.push(quantileBetween(p.lateness, o.lateness, 0.99));
    for (const k of ["t", "added", "popped", "acked", "p50", "p99"]) if (hist[k].length > HISTORY) hist[k].shift();
  }
  hist.prev = o;
}

function clock(ms) {
  const d = new Date(ms);
  return d.toTimeString().slice(0, 8);
}

async function overview() {
  const o = await api("overview");
  sample(o);
  const fsyncAge = o.last_fsync_unix ? Math.max(0, o.now_ms / 1000 - o.last_fsync_unix) : null;
  const storageOk = !o.storage_error;
  const lat = o.lateness;
  const bucketLabels = lat.bounds_us.map((b) => "≤" + fmtUs(b)).concat([">" + fmtUs(lat.bounds_us[lat.bounds_us.length - 1])]);
  const times = hist.t.map(clock);
  main.replaceChildren(
    h("h1", {}, "Overview"),
    h("div", { class: "grid" },
      stat("Queues", fmtInt(o.queues)),
      stat("Pending", fmtInt(o.pending), "members, leased included"),
      stat("Ready", fmtInt(o.ready), "due, waiting for a consumer"),
      stat("Leased", fmtInt(o.leased), "popped, not yet acked"),
      stat("Dead-lettered", fmtInt(o.dead_lettered), "since start"),
      stat("Consumers blocked", fmtInt(o.blocked_clients), fmtInt(o.connected_clients) + (o.connected_clients === 1 ? " client" : " clients") + " connected"),
      stat("Uptime", fmtDur(o.uptime_s * 1000), "delayd " + o.version),
      stat("Storage", storageOk ? "OK" : "FAILED", storageOk ? fmtBytes(o.disk_bytes) + " on disk" : o.storage_error, storageOk ? "good" : "bad"),
      stat("fsync", o.last_fsync_ok ? "OK" : "FAILED",
        "appendfsync " + o.appendfsync + (fsyncAge != null ? ", last " + fmtDur(fsyncAge * 1000) + " ago" : ", none yet"),
        o.last_fsync_ok ? "good" : "bad"),
    ),
    h("div", { class: "charts" },
      h("div", { class: "card" },
        h("h2", {}, "Throughput (members per second)"),
        lineChart([
          { name: "added", color: "#2457c5", values: hist.added },
          { name: "popped", color: "#d9730d", values: hist.popped },
          { name: "acked", color: "#2e8b57", values: hist.acked },
        ], { xLabels: times, fmt: (v) => (v >= 100 ? fmtInt(Math.round(v)) : v.toFixed(v < 10 ? 1 : 0)) }),
        legend([["added", "#2457c5"], ["popped", "#d9730d"], ["acked", "#2e8b57"]]),
        h("p", { class: "hint" }, `Sampled every second while this page is open (last ${hist.t.length} s).`)),
      h("div", { class: "card" },
        h("h2", {}, "Firing lateness p50 / p99 per second"),
        lineChart([
          { name: "p50", color: "#2e8b57", values: hist.p50 },
          { name: "p99", color: "#c62828", values: hist.p99 },
        ], { xLabels: times, fmt: fmtUs }),
        legend([["p50", "#2e8b57"], ["p99", "#c62828"]]),
        h("p", { class: "hint" }, "Of the members the timing wheel made ready in each second (bucket upper bounds); gaps: nothing fired.")),
      h("div", { class: "card" },
        h("h2", {}, "Firing lateness since start"),
        barChart(bucketLabels, lat.buckets, { color: "#6b7fd7" }),
        h("p", { class: "hint" },
          `${fmtInt(lat.count)} members fired; p50 ${fmtUs(lat.p50_us)}, p99 ${fmtUs(lat.p99_us)}, max ${fmtUs(lat.max_us)}. How long after its due time the timing wheel made each member ready.`)),
    ),
  );
}

// ----------------------------------------------------------------- queues

const qs = { match: "", sort: "name", order: "asc", offset: 0, limit: 50 };

async function queues() {
  const p = new URLSearchParams({ sort: qs.sort, order: qs.order, offset: qs.offset, limit: qs.limit });
  if (qs.match) p.set("match", qs.match);
  const r = await api("queues?" + p);
  const cols = [
    ["name", "Queue", false], ["pending", "Pending", true], ["ready", "Ready", true], ["leased", "Leased", true],
    ["dead_lettered", "Dead-lettered", true], ["oldest_ready_age", "Oldest ready", true], [null, "Next due", true],
  ];
  const head = h("tr", {}, cols.map(([key, label, num]) => {
    const cls = [num ? "num" : "", key ? "sortable" : "", key === qs.sort ? "sorted" : "", key === qs.sort && qs.order === "asc" ? "asc" : ""].join(" ");
    return h("th", {
      class: cls,
      onclick: key ? () => {
        if (qs.sort === key) qs.order = qs.order === "asc" ? "desc" : "asc";
        else { qs.sort = key; qs.order = key === "name" ? "asc" : "desc"; }
        qs.offset = 0; refresh();
      } : null,
    }, label);
  }));
  const rows = r.queues.map((q) => h("tr", {},
    h("td", { class: "name" }, h("a", { href: "#/queue/" + enc(q.name), title: q.name }, q.name)),
    h("td", { class: "num" }, fmtInt(q.pending)),
    h("td", { class: "num" }, fmtInt(q.ready)),
    h("td", { class: "num" }, fmtInt(q.leased)),
    h("td", { class: "num" }, fmtInt(q.dead_lettered)),
    h("td", { class: "num" }, q.ready ? fmtDur(q.oldest_ready_age_ms) : "–"),
    h("td", { class: "num", title: fmtTime(q.next_due_ms) }, q.next_due_ms ? relTime(q.next_due_ms) : "–"),
  ));
  const filter = h("input", { id: "queue-filter", placeholder: "filter by glob, e.g. orders:*", value: qs.match, size: 28 });
  const go = () => { qs.match = filter.value.trim(); qs.offset = 0; refresh(); };
  filter.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
  const last = r.offset + r.queues.length;
  main.replaceChildren(
    h("h1", {}, "Queues"),
    h("div", { class: "toolbar" }, filter, h("button", { onclick: go }, "Filter"),
      qs.match ? h("button", { onclick: () => { qs.match = ""; qs.offset = 0; refresh(); } }, "Clear") : ""),
    h("div", { class: "table-wrap card", style: "padding:0" }, h("table", { id: "queues-table" }, h("thead", {}, head), h("tbody", {}, rows))),
    h("div", { class: "pager" },
      h("button", { disabled: r.offset === 0, onclick: () => { qs.offset = Math.max(0, qs.offset - qs.limit); refresh(); } }, "‹ Prev"),
      h("span", {}, r.total ? `${fmtInt(r.offset + 1)}–${fmtInt(last)} of ${fmtInt(r.total)}` : "no queues" + (qs.match ? " match" : "")),
      h("button", { disabled: last >= r.total, onclick: () => { qs.offset += qs.limit; refresh(); } }, "Next ›")),
  );
  // Keep the caret in the filter box across the refresh.
  if (queues.focus) { filter.focus(); filter.setSelectionRange(filter.value.length, filter.value.length); }
}

// ------------------------------------------------------------- one queue

const RANGES = {
  "1h": { step: 60000, buckets: 60, label: "next hour, per minute", unit: "minute" },
  "24h": { step: 15 * 60000, buckets: 96, label: "next 24 hours, per 15 minutes", unit: "15 minutes" },
  "7d": { step: 3600000, buckets: 168, label: "next 7 days, per hour", unit: "hour" },
};
const qv = { name: null, range: "1h", tab: "ready", offset: 0, limit: 25, requeueTo: "" };

function fmtBucket(ms, step) {
  const d = new Date(ms);
  const hm = d.toTimeString().slice(0, 5);
  return step >= 3600000 ? `${d.getMonth() + 1}/${d.getDate()} ${hm}` : hm;
}

async function act(what, fn) {
  try { const r = await fn(); toast(what(r)); await refresh(); } catch (e) { toast(e.message, true); }
}

async function queue(name) {
  if (qv.name !== name) Object.assign(qv, { name, tab: "ready", offset: 0 });
  const R = RANGES[qv.range];
  const now = Date.now();
  const from = Math.floor(now / R.step) * R.step;
  const range = qv.tab === "ready" ? { min: "-inf", max: String(now) } : { min: "(" + now, max: "+inf" };
  const [info, tl, ms] = await Promise.all([
    api("queues/" + enc(name)),
    api(`queues/${enc(name)}/timeline?from_ms=${from}&step_ms=${R.step}&buckets=${R.buckets}`),
    api(`queues/${enc(name)}/members?` + new URLSearchParams({ ...range, offset: qv.offset, limit: qv.limit })),
  ]);
  const labels = tl.counts.map((_, i) => fmtBucket(tl.from_ms + i * tl.step_ms, tl.step_ms));
  const requeueInput = h("input", { id: "requeue-to", placeholder: "queue to requeue to", value: qv.requeueTo, size: 22,
    oninput: (e) => (qv.requeueTo = e.target.value.trim()) });
  const need = () => { if (!qv.requeueTo) throw new Error("type the queue to requeue to first"); return qv.requeueTo; };
  const rows = ms.members.map((m) => h("tr", {},
    h("td", { class: "name", title: m.member }, h("a", { href: `#/find/${enc(name)}/${enc(m.member)}` }, m.member)),
    h("td", { title: fmtTime(m.due_ms) }, fmtTime(m.due_ms), h("span", { class: "hint" }, " " + relTime(m.due_ms))),
    h("td", {}, h("span", { class: "state " + m.state }, m.state)),
    h("td", { class: "num" }, fmtInt(m.deliveries)),
    h("td", { class: "actions" },
      h("button", { title: "Reschedule", onclick: () => {
        const v = prompt(`Reschedule "${m.member}": due in how many seconds?`, "60");
        if (v == null) return;
        act(() => "rescheduled", () => api(`queues/${enc(name)}/members`, { method: "POST", body: { members: [{ member: m.member, delay_ms: Math.round(Number(v) * 1000) }], xx: true } }));
      } }, "Reschedule"),
      h("button", { class: "requeue", onclick: () => act((r) => `requeued ${r.requeued}`, () =>
        api(`queues/${enc(name)}/requeue`, { method: "POST", body: { to: need(), members: [m.member] } })) }, "Requeue"),
      h("button", { class: "danger", onclick: () => {
        if (!confirm(`Remove "${m.member}" from ${name}?`)) return;
        act(() => "removed", () => api(`queues/${enc(name)}/members/${enc(m.member)}`, { method: "DELETE" }));
      } }, "Remove"),
    ),
  ));
  const tab = (key, label) => h("button", { class: qv.tab === key ? "active" : "", onclick: () => { qv.tab = key; qv.offset = 0; refresh(); } }, label);
  main.replaceChildren(
    h("h1", {}, h("a", { href: "#/queues" }, "Queues"), " / ", name),
    h("div", { class: "grid" },
      stat("Pending", fmtInt(info.pending)), stat("Ready", fmtInt(info.ready)), stat("Leased", fmtInt(info.leased)),
      stat("Dead-lettered", fmtInt(info.dead_lettered), "moved to its dead-letter queue"),
      stat("Oldest ready", info.ready ? fmtDur(info.oldest_ready_age_ms) : "–"),
      stat("Next due", info.next_due_ms ? relTime(info.next_due_ms) : "–", info.next_due_ms ? fmtTime(info.next_due_ms) : ""),
      stat("Added / popped / acked", `${fmtInt(info.added)} / ${fmtInt(info.popped)} / ${fmtInt(info.acked)}`, "since start"),
    ),
    h("div", { class: "card", style: "margin-bottom:14px" },
      h("div", { class: "toolbar" }, h("h2", { style: "margin:0" }, "Coming due"),
        h("select", { id: "timeline-range", onchange: (e) => { qv.range = e.target.value; refresh(); } },
          Object.entries(RANGES).map(([k, v]) => h("option", { value: k, selected: k === qv.range }, v.label)))),
      barChart(labels, tl.counts, { height: 220, wide: true, tip: (i) => fmtTime(tl.from_ms + i * tl.step_ms), yTitle: `members due per ${R.unit}` }),
      h("p", { class: "hint" }, `${fmtInt(tl.overdue)} already due before ${fmtBucket(tl.from_ms, tl.step_ms)}; ${fmtInt(tl.counts.reduce((a, b) => a + b, 0))} due in the window shown.`)),
    h("div", { class: "card" },
      h("div", { class: "toolbar" },
        h("div", { class: "tabs" }, tab("ready", `Ready (${fmtInt(info.ready)})`), tab("upcoming", "Upcoming and leased")),
        h("span", { style: "flex:1" }),
        requeueInput,
        h("button", { id: "requeue-all", onclick: () => {
          let to; try { to = need(); } catch (e) { toast(e.message, true); return; }
          if (!confirm(`Requeue every member of ${name} to ${to}?`)) return;
          act((r) => `requeued ${fmtInt(r)}`, async () => {
            let total = 0, r;
            do { r = await api(`queues/${enc(name)}/requeue`, { method: "POST", body: { to } }); total += r.requeued; } while (r.remaining > 0 && r.requeued > 0);
            return total;
          });
        } }, "Requeue all"),
        h("button", { class: "danger", onclick: () => {
          if (!confirm(`Delete the queue ${name} and all its ${fmtInt(info.pending)} members?`)) return;
          act(() => "deleted", () => api(`queues/${enc(name)}`, { method: "DELETE" }));
        } }, "Delete queue")),
      h("div", { class: "table-wrap" }, h("table", { id: "members-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Member"), h("th", {}, "Due"), h("th", {}, "State"), h("th", { class: "num" }, "Deliveries"), h("th", {}, "Actions"))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "hint" }, "none"))))),
      h("div", { class: "pager" },
        h("button", { disabled: qv.offset === 0, onclick: () => { qv.offset = Math.max(0, qv.offset - qv.limit); refresh(); } }, "‹ Prev"),
        h("span", {}, ms.members.length ? `${fmtInt(qv.offset + 1)}–${fmtInt(qv.offset + ms.members.length)} by due time` : ""),
        h("button", { disabled: !ms.more, onclick: () => { qv.offset += qv.limit; refresh(); } }, "Next ›"))),
  );
}

// ------------------------------------------------------------------- find

async function find(q = "", m = "") {
  const qi = h("input", { id: "find-queue", placeholder: "queue", value: q, size: 24 });
  const mi = h("input", { id: "find-member", placeholder: "member", value: m, size: 24 });
  const out = h("div", {});
  const go = () => { location.hash = `#/find/${enc(qi.value)}/${enc(mi.value)}`; };
  for (const i of [qi, mi]) i.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
  main.replaceChildren(h("h1", {}, "Find a message"),
    h("div", { class: "toolbar" }, qi, mi, h("button", { class: "primary", onclick: go }, "Find")), out);
  if (!q || !m) return;
  const r = await api(`queues/${enc(q)}/members/${enc(m)}`);
  const kv = r.found
    ? h("dl", { class: "kv" },
        h("dt", {}, "Queue"), h("dd", {}, h("a", { href: "#/queue/" + enc(r.queue) }, r.queue)),
        h("dt", {}, "Member"), h("dd", {}, r.member),
        h("dt", {}, "State"), h("dd", {}, h("span", { class: "state " + r.state }, r.state)),
        h("dt", {}, r.state === "leased" ? "Lease runs out" : "Due"), h("dd", {}, fmtTime(r.due_ms) + " (" + relTime(r.due_ms) + ")"),
        h("dt", {}, "Deliveries"), h("dd", {}, fmtInt(r.deliveries)))
    : h("p", {}, `"${r.member}" is not in ${r.queue} (never added, or popped, acked or removed).`);
  const trace = r.trace.length
    ? h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Time"), h("th", {}, "Event"), h("th", {}, "Detail"))),
        h("tbody", {}, r.trace.map((e) => h("tr", {}, h("td", {}, fmtTime(e.time_ms)), h("td", {}, e.event), h("td", {}, e.detail))))))
    : h("p", { class: "hint" }, "No trace: the queue is not traced (CONFIG SET trace-queues GLOB turns it on).");
  out.replaceChildren(h("div", { class: "card", style: "margin-bottom:14px" }, kv), h("div", { class: "card" }, h("h2", {}, "Trace"), trace));
}

// ---------------------------------------------------------------- routing

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  const dec = (x) => { try { return decodeURIComponent(x || ""); } catch (_) { return x; } };
  switch (parts[0]) {
    case "queues": return { nav: "queues", run: queues, live: true };
    case "queue": return { nav: "queues", run: () => queue(dec(parts.slice(1).join("/"))), live: true };
    case "find": return { nav: "find", run: () => find(dec(parts[1]), dec(parts[2])), live: false };
    default: return { nav: "overview", run: overview, live: true };
  }
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  const r = route();
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.dataset.nav === r.nav);
  // Don't redraw under the user's typing or an open prompt.
  queues.focus = document.activeElement && document.activeElement.id === "queue-filter";
  try {
    await r.run();
    $("#status").textContent = "updated " + new Date().toTimeString().slice(0, 8);
  } catch (e) {
    if (e.status !== 401) $("#status").textContent = "error: " + e.message;
  } finally {
    busy = false;
  }
}

function live() {
  clearInterval(timer);
  timer = setInterval(() => {
    const a = document.activeElement;
    const typing = a && (a.tagName === "INPUT" || a.tagName === "SELECT") && a.id !== "queue-filter";
    if (route().live && !typing && $("#login").hidden) refresh();
  }, route().nav === "overview" ? 1000 : 2000);
}

// ------------------------------------------------------------------ login

function showLogin() {
  $("#login").hidden = false;
  $("#login-form [name=password]").focus();
}

$("#login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target;
  try {
    const r = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Delayd-Console": "1" },
      body: JSON.stringify({ user: f.user.value, password: f.password.value }),
    });
    const data = await r.json();
    if (!r.ok) throw new Error(data.error || r.statusText);
    csrf = data.csrf_token;
    f.password.value = "";
    $("#login-error").textContent = "";
    $("#login").hidden = true;
    $("#logout").hidden = !data.auth_required;
    refresh();
  } catch (err) {
    $("#login-error").textContent = err.message;
  }
});

$("#logout").addEventListener("click", async () => {
  await fetch("/api/logout", { method: "POST", headers: { "X-Delayd-Console": "1" } });
  csrf = null;
  $("#logout").hidden = true;
  showLogin();
});

async function start() {
  const r = await fetch("/api/session", { headers: { "X-Delayd-Console": "1" } }).then((x) => x.json());
  csrf = r.csrf_token;
  $("#logout").hidden = !(r.auth_required && r.authenticated && csrf);
  if (r.auth_required && !r.authenticated) showLogin();
  else refresh();
  live();
}

window.addEventListener("hashchange", () => { refresh(); live(); });
start();
