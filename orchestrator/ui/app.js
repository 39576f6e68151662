// The live cluster page. Plain JavaScript, no framework, no build step:
// every second it reads /api/v1/cluster (workers, autoscaler, events) and
// /api/v1/plugins, and every two seconds the routing view Traefik's API
// gives (proxied by the orchestrator under /api/v1/traefik/http/...).
// Everything is written with textContent: names come from the cluster.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells, attrs) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c); else if (c && typeof c === "object") {
      td.textContent = c.text; if (c.cls) td.className = c.cls;
    } else td.textContent = c === undefined || c === null ? "" : String(c);
    tr.appendChild(td);
  }
  for (const [k, v] of Object.entries(attrs || {})) tr.setAttribute(k, v);
  return tr;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function badge(id, text, cls) {
  const b = $(id);
  b.textContent = text;
  b.className = "badge " + (cls || "");
}

function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  return s < 60 ? s + " s ago" : Math.round(s / 60) + " min ago";
}

function until(iso) {
  const s = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  return s > 0 ? "in " + s + " s" : "now";
}

async function getJSON(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(path + ": " + r.status + " " + (body.error || ""));
  return body;
}

let dev = false;

function renderCluster(c) {
  dev = c.dev && c.admin_open;
  badge("badge-ready", c.ready ? "ready" : "no master ready", c.ready ? "ok" : "bad");
  badge("badge-rabbitmq", c.rabbitmq ? "RabbitMQ connected" : "RabbitMQ down", c.rabbitmq ? "ok" : "bad");
  badge("badge-runtime", "runtime " + c.runtime);
  badge("badge-mode", c.admin_open ? "dev mode: admin open" : "admin needs a token", c.admin_open ? "warn" : "ok");
  $("crash-actions").hidden = !dev;

  const ws = c.workers || [];
  $("worker-count").textContent = "(" + ws.length + ")";
  fill($("workers").tBodies[0], ws.map((w) => row([
    { text: w.id },
    { text: w.role, cls: "role-" + w.role },
    { text: w.state, cls: "state-" + w.state },
    { text: w.pid },
    { text: w.applied_seq },
    { text: w.lag, cls: w.lag > 0 ? "lag-bad" : "" },
    { text: w.epoch },
    { text: w.metrics || "" },
    { text: (w.plugins || []).map((p) => p.name + "@" + p.version).join(", ") },
  ], { class: "worker", "data-id": w.id, "data-pid": String(w.pid), "data-role": w.role, "data-state": w.state, "data-metrics": w.metrics || "" })));

  const a = c.autoscaler;
  $("as-window").textContent = a.window + " (" + a.reads_per_slave + " reads per slave, " + a.min_slaves + ".." + a.max_slaves + " slaves)";
  $("as-reads").textContent = a.reads;
  $("as-next").textContent = a.next_decision ? until(a.next_decision) : "the window starts at the first read";
  $("as-slaves").textContent = a.slaves + (a.pinned ? "" : " (autoscaler: " + a.autoscaled + ")");
  $("as-pinned").textContent = a.pinned ? "yes, at " + a.pinned : "no";
  $("as-last").textContent = a.last_decision ? a.last_decision.why + " (" + ago(a.last_decision.at) + ")" : "none yet";

  const evs = (c.events || []).slice().reverse();
  $("events").replaceChildren(...evs.map((e) => {
    const li = el("li");
    li.setAttribute("data-kind", e.kind);
    li.appendChild(el("span", e.kind, "ev-kind ev-" + e.kind));
    li.appendChild(el("span", " " + e.message + " "));
    li.appendChild(el("span", ago(e.time), "muted"));
    return li;
  }));
  $("routing-off").hidden = c.traefik_api;
}

function renderPlugins(ps) {
  fill($("plugins").tBodies[0], ps.map((p) => row([
    p.name, p.version, el("code", (p.sha256 || "").slice(0, 16)), p.workers.length,
  ], { class: "plugin", "data-name": p.name })));
}

function renderRouting(routers, services) {
  fill($("routers").tBodies[0], routers.map((r) => row([
    r.name, el("code", r.rule), r.service, (r.entryPoints || []).join(", "), { text: r.status, cls: "status-" + r.status },
  ], { class: "router", "data-name": r.name })));
  fill($("services").tBodies[0], services.map((s) => {
    const servers = Object.entries(s.serverStatus || {}).map(([u, st]) => u + " " + st);
    if (servers.length === 0 && s.loadBalancer) for (const sv of s.loadBalancer.servers || []) servers.push(sv.url);
    return row([s.name, servers.join(", "), { text: s.status, cls: "status-" + s.status }], { class: "service", "data-name": s.name });
  }));
}

function showError(msg) {
  const e = $("error");
  e.hidden = !msg;
  e.textContent = msg || "";
}

async function tick() {
  try {
    const [c, ps] = await Promise.all([getJSON("/api/v1/cluster"), getJSON("/api/v1/plugins")]);
    renderCluster(c);
    renderPlugins(ps);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    showError("");
  } catch (err) {
    showError("cannot reach the orchestrator: " + err.message);
  }
}

let routingOn = true;

async function tickRouting() {
  if (!routingOn) return;
  try {
    const [r, s] = await Promise.all([getJSON("/api/v1/traefik/http/routers"), getJSON("/api/v1/traefik/http/services")]);
    renderRouting(r, s);
  } catch (err) {
    if (String(err.message).includes(" 404 ")) routingOn = false; // no --traefik-api
    fill($("routers").tBodies[0], [row([{ text: err.message, cls: "muted" }])]);
  }
}

async function crash(which) {
  const b = $("crash-" + which);
  b.disabled = true;
  $("action-result").textContent = "crashing the " + which + "…";
  try {
    const r = await fetch("/api/v1/crash/" + which, { method: "POST" });
    const body = await r.json().catch(() => ({}));
    $("action-result").textContent = r.ok ? "killed pid " + body[0] : "crash/" + which + ": " + r.status + " " + (body.error || "");
  } catch (err) {
    $("action-result").textContent = "crash/" + which + " failed: " + err.message;
  } finally {
    b.disabled = false;
    tick();
  }
}

$("crash-master").addEventListener("click", () => crash("master"));
$("crash-slave").addEventListener("click", () => crash("slave"));
tick();
tickRouting();
setInterval(tick, 1000);
setInterval(tickRouting, 2000);
