// The Clients view: searches the connected clients of every replica through the management API,
// opens a client's session, and kicks or bans (with the admin token). Values from the API go into
// the page as text, never as markup; el() comes from app.js.
"use strict";

const clientsView = {
  role: "",
  query: "",
  timer: null,
};

function clientsMsg(text, error) {
  const m = document.getElementById("client-msg");
  m.textContent = text;
  m.className = error ? "error" : "muted";
}

function unreachableText(list) {
  if (!list || list.length === 0) return "";
  return " Not answering: " + list.map((u) => u.replica + " (" + u.error + ")").join(", ") + ".";
}

async function apiJSON(method, path, body) {
  const opts = { method, cache: "no-store", headers: {} };
  if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch (e) { data = { error: text.trim() }; }
  return { status: r.status, ok: r.ok, data };
}

async function loadRole() {
  const r = await apiJSON("GET", "api/v1/whoami");
  clientsView.role = r.ok ? r.data.role : "";
  document.getElementById("client-role").textContent = clientsView.role ? "signed in as " + clientsView.role : "";
}

function actionButton(label, action, id, handler) {
  const admin = clientsView.role === "admin";
  const b = el("button", { type: "button", "data-action": action, "data-client": id, disabled: !admin,
    title: admin ? "" : "needs the admin token (GATEWAY_ADMIN_TOKEN)" }, label);
  b.addEventListener("click", () => handler(id));
  return b;
}

function clientRow(c) {
  const open = el("a", { "data-client": c.client_id }, c.client_id);
  open.addEventListener("click", () => openSession(c.client_id));
  return el("tr", { "data-client": c.client_id, "data-replica": c.replica },
    el("td", {}, open), el("td", {}, c.username), el("td", {}, c.replica), el("td", {}, c.remote_addr),
    el("td", {}, c.protocol), el("td", {}, new Date(c.connected_at).toLocaleString()),
    el("td", {}, c.keep_alive + " s"), el("td", {}, c.subscriptions), el("td", {}, c.inflight),
    el("td", {}, c.queued),
    el("td", { class: "actions" }, actionButton("Kick", "kick", c.client_id, kickClient),
      actionButton("Ban", "ban", c.client_id, banClient)));
}

async function loadClients() {
  clearTimeout(clientsView.timer);
  try {
    const r = await apiJSON("GET", "api/v1/clients?limit=200&q=" + encodeURIComponent(clientsView.query));
    if (!r.ok) throw new Error(r.data.error || "HTTP " + r.status);
    document.querySelector("#clients tbody").replaceChildren(...r.data.clients.map(clientRow));
    const more = document.getElementById("clients-more");
    more.hidden = !r.data.next;
    more.textContent = "More clients match; narrow the search.";
    document.getElementById("clients").dataset.loaded = String(Date.now());
    const u = unreachableText(r.data.unreachable);
    if (u) clientsMsg(u.trim(), true);
  } catch (e) {
    clientsMsg("Clients not loaded: " + e.message, true);
  }
  clientsView.timer = setTimeout(loadClients, 5000);
}

async function kickClient(id) {
  const r = await apiJSON("POST", "api/v1/clients/" + encodeURIComponent(id) + "/kick");
  if (r.ok) clientsMsg("Kicked " + r.data.kicked.map((k) => k.client_id + " on " + k.replica).join(", ") + "." + unreachableText(r.data.unreachable));
  else clientsMsg("Kick of " + id + " failed: " + (r.data.error || r.status) + unreachableText(r.data.unreachable), true);
  await loadClients();
}

async function banClient(id) {
  const secs = parseInt(document.getElementById("ban-seconds").value, 10);
  const r = await apiJSON("POST", "api/v1/bans", { kind: "client_id", value: id, duration_seconds: secs, reason: "status page" });
  if (r.ok) clientsMsg("Banned " + id + " until " + new Date(r.data.ban.until).toLocaleString() + "." + unreachableText(r.data.unreachable));
  else clientsMsg("Ban of " + id + " failed: " + (r.data.error || r.status), true);
  await loadClients();
}

async function openSession(id) {
  const box = document.getElementById("session");
  const r = await apiJSON("GET", "api/v1/clients/" + encodeURIComponent(id));
  box.hidden = false;
  if (!r.ok) {
    box.replaceChildren(el("p", { class: "error" }, "No session of " + id + ": " + (r.data.error || r.status)));
    return;
  }
  const s = r.data;
  const expiry = s.expiry_seconds < 0 ? "never expires" : s.expiry_seconds === 0 ? "ends with the connection" : "expires " + s.expiry_seconds + " s after disconnecting";
  const subs = el("table", { id: "session-subs" },
    el("thead", {}, el("tr", {}, ...["filter", "QoS", "no local", "retain as published", "retain handling", "subscription id"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...s.subscriptions.map((x) => el("tr", { "data-filter": x.filter }, el("td", {}, x.filter), el("td", {}, x.qos),
      el("td", {}, x.no_local ? "yes" : "no"), el("td", {}, x.retain_as_published ? "yes" : "no"),
      el("td", {}, x.retain_handling), el("td", {}, x.subscription_id || "")))));
  box.dataset.client = s.client_id;
  box.replaceChildren(
    el("h3", {}, "Session of " + s.client_id),
    el("p", {}, "on " + s.replica + " · " + (s.connected ? "connected" : "offline") + " · " + expiry + " · " +
      s.inflight + " in flight · " + s.queued + " queued (" + s.queued_bytes + " bytes)"),
    subs);
}

document.getElementById("client-search").addEventListener("submit", (ev) => {
  ev.preventDefault();
  clientsView.query = document.getElementById("client-q").value;
  loadClients();
});

loadRole().then(loadClients);
