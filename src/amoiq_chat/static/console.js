/* amoiq-chat agent console: login, the live queue, active chats, the conversation, online visitors, stats.
 * Plain JavaScript, no build step; speaks the REST API and /ws/agent/{id} of the server it was loaded from. */
(function () {
  "use strict";
  var API = new URL(document.currentScript.src, location.href).origin;
  var WS_API = API.replace(/^http/, "ws");
  var $ = function (id) { return document.getElementById(id); };
  var me = null, ws = null, attempt = 0, retryTimer = null, current = null, typingTimer = null, typingOff = null, typingSent = false;
  var chats = {};   // sessionId -> {id, name, status, mine, lastSeq, messages: {seq: node}, unread, info}
  var waiting = [], online = {};

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), attrs[k]);
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }
  function toast(text) {
    var t = $("toast"); t.textContent = text; t.hidden = false;
    clearTimeout(toast.timer); toast.timer = setTimeout(function () { t.hidden = true; }, 5000);
  }
  function call(method, path, body) {
    var headers = { "Content-Type": "application/json" };
    if (me) headers.Authorization = "Bearer " + me.token;
    return fetch(API + path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined })
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (data) {
          if (!resp.ok) { var e = new Error(data.message || resp.statusText); e.status = resp.status; throw e; }
          return data;
        });
      });
  }

  // ---- login ----
  $("login-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var role = document.querySelector("input[name=role]:checked").value;
    $("login-error").textContent = "";
    $("login-button").disabled = true;
    call("POST", role === "agent" ? "/api/auth/agent-login" : "/api/auth/login",
      { email: $("email").value.trim(), password: $("password").value })
      .then(function (res) {
        var who = res.data.agent || res.data.user;
        signedIn({ id: who.id, role: role, name: who.full_name || who.username, tenantId: who.tenantId, token: res.data.token });
      }, function (err) { $("login-error").textContent = err.message; })
      .then(function () { $("login-button").disabled = false; });
  });
  $("logout").addEventListener("click", function () {
    sessionStorage.removeItem("amoiq-console"); me = null;
    if (ws) { var old = ws; ws = null; old.close(); }
    clearTimeout(retryTimer);
    location.reload();
  });
  function signedIn(who) {
    me = who;
    sessionStorage.setItem("amoiq-console", JSON.stringify(who));
    $("login").hidden = true; $("app").hidden = false;
    $("me").textContent = who.name + " (" + who.role + ")";
    loadActiveChats();
    loadStats();
    connect();
  }

  // ---- the socket ----
  function connect() {
    if (!me) return;
    var sock = new WebSocket(WS_API + "/ws/agent/" + encodeURIComponent(me.id) + "?token=" + encodeURIComponent(me.token));
    ws = sock;
    sock.onmessage = function (e) { var f; try { f = JSON.parse(e.data); } catch (x) { return; } onFrame(f); };
    sock.onclose = function () {
      if (ws !== sock) return;
      ws = null; setConn(false);
      var delay = Math.min(30000, 500 * Math.pow(2, attempt++)) * (0.75 + Math.random() * 0.5);
      retryTimer = setTimeout(connect, delay);
    };
  }
  function send(frame) { if (ws && ws.readyState === 1) { ws.send(JSON.stringify(frame)); return true; } toast("Not connected; try again in a moment"); return false; }
  function setConn(ok) { $("conn").textContent = ok ? "Online" : "Reconnecting…"; $("conn").classList.toggle("ok", ok); }
  function onFrame(f) {
    switch (f.type) {
      case "connection_status":
        attempt = 0; setConn(true);
        send({ type: "get_waiting_sessions" });
        send({ type: "get_online_users" });
        Object.keys(chats).forEach(function (id) { if (chats[id].following) send({ type: "sync", sessionId: id, since: chats[id].lastSeq }); });
        break;
      case "waiting_sessions": waiting = f.sessions || []; renderWaiting(); loadStats(); break;
      case "chat_accepted":
        var c = chat(f.sessionId, f.visitorName);
        c.mine = true; c.following = true; c.status = "active";
        (f.messages || []).forEach(function (m) { addMessage(c, m); });
        renderActive(); renderOnline(); select(f.sessionId); loadStats();
        break;
      case "new_message": if (chats[f.sessionId]) addMessage(chats[f.sessionId], f.message); break;
      case "ack": acked(f); break;
      case "typing":
        if (f.sessionId !== current || f.sender === "agent") break;
        clearTimeout(typingTimer);
        $("typing").textContent = f.isTyping ? (f.sender === "ai" ? "The assistant" : chats[current].name) + " is typing…" : "";
        if (f.isTyping) typingTimer = setTimeout(function () { $("typing").textContent = ""; }, 8000);
        break;
      case "online_users_list": online = {}; (f.users || []).forEach(function (u) { online[u.sessionId] = u; }); renderOnline(); break;
      case "user_online": online[f.sessionId] = f; renderOnline(); break;
      case "user_offline": delete online[f.sessionId]; renderOnline(); break;
      case "agent_left": statusOf(f.sessionId, "ai", (f.agentName || "The agent") + " returned the chat to the assistant"); break;
      case "chat_closed": statusOf(f.sessionId, "closed", "Chat closed" + (f.closedBy ? " by " + f.closedBy : "")); break;
      case "error": toast(f.message || f.code); failSending(f.clientMessageId); break;
    }
  }

  // ---- chats ----
  function chat(id, name) {
    var c = chats[id];
    if (!c) {
      c = chats[id] = { id: id, name: name || "Visitor", status: "active", lastSeq: 0, messages: {}, pending: {}, unread: 0,
        log: el("div", {}) };
    } else if (name) c.name = name;
    return c;
  }
  function addMessage(c, m) {
    if (!m || c.messages[m.seq]) return;
    c.lastSeq = Math.max(c.lastSeq, m.seq || 0);
    var staff = m.sender === "agent" && !m.isAI;
    var by = m.sender === "customer" ? c.name : (m.isAI ? "AI Assistant" : "Agent");
    var node = el("div", { class: "msg " + (staff ? "staff" : m.isAI ? "ai" : "visitor"), "data-seq": m.seq }, [
      el("span", { class: "by", text: by }), el("div", { class: "text", text: m.text })]);
    c.messages[m.seq] = node;
    var after = null;
    Object.keys(c.messages).forEach(function (s) { if (+s > m.seq && (!after || +s < +after.dataset.seq)) after = c.messages[s]; });
    c.log.insertBefore(node, after || c.log.querySelector(".sending"));
    if (c.id === current) scrollDown(); else if (m.sender === "customer") { c.unread++; renderActive(); }
  }
  function statusOf(id, status, text) {
    var c = chats[id];
    if (!c) return;
    c.status = status;
    c.log.appendChild(el("p", { class: "note", text: text }));
    if (status !== "active") c.mine = false;
    renderActive(); if (id === current) select(id); loadStats();
  }
  function loadActiveChats() {
    call("GET", "/api/agents/active-chats").then(function (res) {
      (res.data || []).forEach(function (row) {
        var c = chat(row.session_id, row.visitor_name);
        c.mine = me.role === "agent"; c.following = true; c.status = "active";
        loadHistory(c);
      });
      renderActive();
    }, function () { /* an older server without this route: chats appear as they are accepted */ });
  }
  function loadHistory(c) {
    return call("GET", "/api/widgets/sessions/" + encodeURIComponent(c.id) + "/messages").then(function (res) {
      (res.messages || []).forEach(function (m) { addMessage(c, m); });
      var info = res.customerInfo || {};
      c.info = [info.email, info.status].filter(Boolean).join(" · ");
      if (info.name) c.name = info.name;
      if (info.status) c.status = info.status;
      if (c.id === current) select(c.id);
      send({ type: "sync", sessionId: c.id, since: c.lastSeq });
    });
  }
  function view(id, name) {   // follow a chat without taking it (admins; agents looking before accepting)
    var c = chat(id, name);
    c.following = true;
    renderActive(); select(id);
    loadHistory(c).catch(function (e) { toast(e.message); });
  }
  function accept(id) { send({ type: "accept_chat", sessionId: id }); }

  // ---- rendering ----
  function item(label, sub, buttons, cls) {
    return el("li", { class: cls || "" }, [el("span", { class: "who" }, [document.createTextNode(label), sub ? el("span", { class: "sub", text: sub }) : null])]
      .concat(buttons));
  }
  function renderWaiting() {
    var list = $("waiting"); list.textContent = "";
    waiting.forEach(function (s) {
      var buttons = [me.role === "agent"
        ? el("button", { type: "button", text: "Accept", "aria-label": "Accept chat with " + s.visitorName, onclick: function () { accept(s.sessionId); } })
        : el("button", { type: "button", class: "quiet", text: "View", "aria-label": "View chat with " + s.visitorName, onclick: function () { view(s.sessionId, s.visitorName); } })];
      list.appendChild(item(s.visitorName, "waiting " + s.waitingTime + " min · " + (s.businessName || ""), buttons));
    });
    $("waiting-count").textContent = waiting.length;
  }
  function renderActive() {
    var list = $("active"); list.textContent = "";
    var ids = Object.keys(chats).filter(function (id) { return chats[id].following; });
    ids.forEach(function (id) {
      var c = chats[id];
      var open = el("button", { type: "button", class: "quiet", text: "Open", "aria-label": "Open chat with " + c.name, onclick: function () { select(id); } });
      var li = item(c.name, c.status + (c.mine ? " · yours" : ""), [c.unread ? el("span", { class: "unread", text: String(c.unread), "aria-label": c.unread + " unread" }) : null, open],
        id === current ? "current" : "");
      list.appendChild(li);
    });
    $("active-count").textContent = ids.length;
  }
  function renderOnline() {
    var list = $("online"); list.textContent = "";
    Object.keys(online).forEach(function (sid) {
      var u = online[sid];
      var label = u.userId || "Anonymous visitor";
      var buttons = me.role === "agent" && !(chats[sid] && chats[sid].mine)
        ? [el("button", { type: "button", class: "quiet", text: "Take over", "aria-label": "Take over the chat of " + label, onclick: function () { accept(sid); } })]
        : [el("button", { type: "button", class: "quiet", text: "View", "aria-label": "View the chat of " + label, onclick: function () { view(sid); } })];
      list.appendChild(item(label, u.url || u.domain || "", buttons));
    });
    $("online-count").textContent = Object.keys(online).length;
  }
  function loadStats() {
    var dl = $("stats");
    var rows = [["Waiting", waiting.length], ["Online visitors", Object.keys(online).length]];
    var draw = function (extra) {
      dl.textContent = "";
      rows.concat(extra).forEach(function (r) { dl.appendChild(el("dt", { text: r[0] })); dl.appendChild(el("dd", { text: r[1] == null ? "–" : String(r[1]) })); });
    };
    draw([]);
    call("GET", "/api/agents/stats").then(function (res) {
      var d = res.data || {};
      draw([["Chats handled", d.chatsHandled], ["Active chats", d.activeChats], ["Avg response", d.avgResponseTime], ["Satisfaction", d.customerSatisfaction]]);
    }, function () {});
  }
  function scrollDown() { var m = $("messages"); m.scrollTop = m.scrollHeight; }
  function select(id) {
    current = id;
    var c = chats[id];
    c.unread = 0;
    var box = $("messages"); box.textContent = ""; box.appendChild(c.log);
    $("chat-title").textContent = c.name;
    $("chat-info").textContent = [c.id, c.status, c.info].filter(Boolean).join(" · ");
    var mayWrite = c.status !== "closed" && (c.mine || me.role === "admin");
    $("reply").disabled = !mayWrite; $("send").disabled = !mayWrite;
    $("return-ai").disabled = !mayWrite || c.status === "ai"; $("close-chat").disabled = !mayWrite;
    $("typing").textContent = "";
    renderActive(); scrollDown();
  }

  // ---- replying ----
  function sendReply() {
    var text = $("reply").value.trim();
    if (!text || !current) return;
    var id = "cm_" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
    if (!send({ type: "send_message", sessionId: current, text: text, clientMessageId: id })) return;
    var node = el("div", { class: "msg staff sending" }, [el("span", { class: "by", text: "You" }), el("div", { class: "text", text: text })]);
    chats[current].pending[id] = node;
    chats[current].log.appendChild(node);
    $("reply").value = ""; typing(false); scrollDown();
  }
  function acked(f) {
    var c = chats[f.sessionId]; if (!c || !c.pending[f.clientMessageId]) return;
    c.pending[f.clientMessageId].remove(); delete c.pending[f.clientMessageId];
  }
  function failSending(id) {
    Object.keys(chats).forEach(function (sid) {
      var node = chats[sid].pending[id];
      if (node) { node.classList.remove("sending"); node.querySelector(".by").textContent = "Not sent"; delete chats[sid].pending[id]; }
    });
  }
  function typing(on) {
    clearTimeout(typingOff);
    if (on) typingOff = setTimeout(function () { typing(false); }, 3000);
    if (on === typingSent || !current) return;
    typingSent = on;
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "typing", sessionId: current, isTyping: on }));
  }
  $("reply-form").addEventListener("submit", function (e) { e.preventDefault(); sendReply(); });
  $("reply").addEventListener("keydown", function (e) { if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendReply(); } });
  $("reply").addEventListener("input", function () { typing(true); });
  $("return-ai").addEventListener("click", function () { if (current) send({ type: "return_to_ai", sessionId: current }); });
  $("close-chat").addEventListener("click", function () { if (current) send({ type: "close_chat", sessionId: current }); });

  var saved = null;
  try { saved = JSON.parse(sessionStorage.getItem("amoiq-console")); } catch (e) { saved = null; }
  if (saved && saved.token) signedIn(saved);
})();
