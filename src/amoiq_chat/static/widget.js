/* amoiq-chat widget: <script src="https://chat.example.com/widget.js" data-site-key="widget-..." data-key="pk_..." async></script>
 * Plain JavaScript, no build step. Renders in a Shadow DOM; speaks the REST + raw WebSocket protocol
 * of the server it was loaded from (or data-api). See README.md, "The chat widget". */
(function () {
  "use strict";
  var VERSION = "__AMOIQ_VERSION__";
  var script = document.currentScript || document.querySelector("script[data-site-key]");
  if (!script || window.__amoiqChatLoaded) return;
  window.__amoiqChatLoaded = true;
  var ds = script.dataset;
  var SITE_KEY = ds.siteKey || "";
  var PK = ds.key || "";
  var API = (ds.api || new URL(script.src, location.href).origin).replace(/\/+$/, "");
  var WS_API = API.replace(/^http/, "ws");
  var STORE_KEY = "amoiq-chat:" + SITE_KEY;
  var queued = Array.isArray(window.AmoiqChat) ? window.AmoiqChat : [];

  // ---- persistent state (shared by the tabs of this site through localStorage) ----
  function load() {
    try { return JSON.parse(localStorage.getItem(STORE_KEY)) || {}; } catch (e) { return {}; }
  }
  var saved = load();
  function save(changes) {
    saved = Object.assign(load(), changes);
    try { localStorage.setItem(STORE_KEY, JSON.stringify(saved)); } catch (e) { /* private mode: memory only */ }
  }
  function randomId(prefix) {
    var bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return prefix + Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  if (!saved.fingerprint) save({ fingerprint: randomId("fp_") });

  // ---- per-tab state ----
  var cfg = null, ws = null, wsOpen = false, joined = false, attempt = 0, retryTimer = null, lastSeq = 0;
  var mode = "ai", agentName = "", isOpen = false, stopped = false, connecting = false, typingTimer = null;
  var rendered = {};   // seq -> element
  var pendingEls = {}; // clientMessageId -> element

  // ---- DOM: one host element, an open shadow root, styles that the page cannot reach ----
  var host = document.createElement("amoiq-chat");
  var root = host.attachShadow({ mode: "open" });
  var CSS = [
    ":host{all:initial!important;position:fixed!important;z-index:2147483000!important;display:block!important;" +
      "visibility:visible!important;opacity:1!important;transform:none!important;width:auto!important;height:auto!important}",
    ":host(.bottom-right){bottom:20px!important;right:20px!important}:host(.bottom-left){bottom:20px!important;left:20px!important}",
    ":host(.top-right){top:20px!important;right:20px!important}:host(.top-left){top:20px!important;left:20px!important}",
    ".w{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',Arial,sans-serif;color:#1f2328;display:flex;" +
      "flex-direction:column;align-items:flex-end;gap:12px;text-align:left;letter-spacing:normal;text-transform:none}",
    ":host(.bottom-left) .w,:host(.top-left) .w{align-items:flex-start}:host(.top-right) .w,:host(.top-left) .w{flex-direction:column-reverse}",
    "*{box-sizing:border-box;margin:0;padding:0;font:inherit;color:inherit;letter-spacing:inherit}",
    "button,textarea,input,select{border:0;background:none;outline:none}",
    ":focus-visible{outline:2px solid var(--p)!important;outline-offset:2px}",
    ".launch{width:56px;height:56px;border-radius:50%;background:var(--p);color:#fff;cursor:pointer;position:relative;" +
      "box-shadow:0 4px 14px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center}",
    ".launch svg{width:26px;height:26px;fill:#fff}",
    ".badge{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;border-radius:10px;background:#d1242f;color:#fff;" +
      "font-size:12px;font-weight:700;line-height:20px;text-align:center;padding:0 5px}",
    ".panel{width:360px;max-width:calc(100vw - 40px);height:540px;max-height:calc(100vh - 110px);background:#fff;border-radius:12px;" +
      "box-shadow:0 8px 30px rgba(0,0,0,.25);display:flex;flex-direction:column;overflow:hidden}",
    "[hidden]{display:none!important}",
    ".head{background:var(--p);color:#fff;padding:12px 14px;display:flex;align-items:center;gap:10px}",
    ".head .t{flex:1;min-width:0}.head h2{font-size:16px;font-weight:700}.head p{font-size:12px;opacity:.9}",
    ".x{color:#fff;width:32px;height:32px;border-radius:6px;cursor:pointer;font-size:20px;line-height:32px;text-align:center}",
    ".bar{background:#fff8c5;color:#4d2d00;font-size:12px;padding:6px 14px}",
    ".log{flex:1;overflow-y:auto;padding:14px;display:flex;flex-direction:column;gap:8px;background:#f6f8fa}",
    ".m{max-width:82%;display:flex;flex-direction:column;gap:2px}.m .who{font-size:11px;color:#59636e}",
    ".m .b{padding:8px 11px;border-radius:12px;background:#fff;border:1px solid #d1d9e0;white-space:pre-wrap;word-wrap:break-word}",
    ".m.me{align-self:flex-end;align-items:flex-end}.m.me .b{background:var(--p);color:#fff;border-color:var(--p)}",
    ".m.me.wait .b{opacity:.6}.m.failed .b{background:#ffebe9;color:#82071e;border-color:#ff818266}",
    ".m .st{font-size:11px;color:#59636e}",
    ".note{align-self:center;font-size:12px;color:#59636e;text-align:center;padding:2px 8px}",
    ".typing{font-size:12px;color:#59636e;padding:0 14px 6px;background:#f6f8fa;min-height:18px}",
    ".acts{display:flex;gap:8px;padding:8px 12px 0;flex-wrap:wrap}",
    ".btn{border:1px solid var(--p);color:var(--p);background:#fff;border-radius:16px;padding:5px 12px;cursor:pointer;font-size:13px}",
    ".btn.solid{background:var(--p);color:#fff}",
    ".comp{display:flex;gap:8px;padding:10px 12px 12px;border-top:1px solid #d1d9e0;align-items:flex-end}",
    ".comp textarea{flex:1;resize:none;height:40px;max-height:120px;border:1px solid #d1d9e0;border-radius:8px;padding:9px 10px;background:#fff}",
    ".send{background:var(--p);color:#fff;border-radius:8px;padding:0 14px;height:40px;cursor:pointer;font-weight:600}",
    "button:disabled{opacity:.5;cursor:default}",
    ".card{background:#fff;border:1px solid #d1d9e0;border-radius:10px;padding:12px;display:flex;flex-direction:column;gap:8px;align-self:stretch}",
    ".card label{display:flex;flex-direction:column;gap:3px;font-size:12px;color:#59636e}",
    ".card input,.card select,.card textarea{border:1px solid #d1d9e0;border-radius:6px;padding:7px 8px;color:#1f2328;background:#fff;font-size:14px}",
    ".stars{display:flex;gap:4px}.star{font-size:24px;line-height:1;color:#afb8c1;cursor:pointer;padding:2px}.star[aria-pressed=true]{color:#d4a72c}",
    ".refused{padding:24px 18px;text-align:center;color:#59636e;flex:1;display:flex;align-items:center;justify-content:center}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
    "@media (max-width:480px){.panel{width:calc(100vw - 24px);height:calc(100vh - 100px)}}"
  ].join("\n");

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
  var ICON = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>';

  var badge = el("span", { class: "badge", "aria-hidden": "true", hidden: "" });
  var launcher = el("button", { class: "launch", type: "button", "aria-expanded": "false", "aria-controls": "amq-panel",
    "aria-label": "Open chat", onclick: function () { setOpen(!isOpen); } });
  launcher.innerHTML = ICON;
  launcher.appendChild(badge);
  var title = el("h2", { id: "amq-title", text: "Chat" });
  var subtitle = el("p", { role: "status", text: "" });
  var closeBtn = el("button", { class: "x", type: "button", "aria-label": "Minimise chat", text: "\u2013",
    onclick: function () { setOpen(false); } });
  var bar = el("div", { class: "bar", role: "status", hidden: "" });
  var log = el("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": "Conversation", tabindex: "0" });
  var typing = el("div", { class: "typing", "aria-live": "polite" });
  var humanBtn = el("button", { class: "btn", type: "button", text: "Talk to a person", onclick: escalate });
  var newBtn = el("button", { class: "btn solid", type: "button", text: "Start a new conversation", hidden: "", onclick: restart });
  var acts = el("div", { class: "acts" }, [humanBtn, newBtn]);
  var input = el("textarea", { rows: "1", "aria-label": "Type your message", placeholder: "Type your message\u2026", maxlength: "10000" });
  var sendBtn = el("button", { class: "send", type: "submit", text: "Send" });
  var composer = el("form", { class: "comp", "aria-label": "Send a message" }, [input, sendBtn]);
  var panel = el("div", { class: "panel", id: "amq-panel", role: "dialog", "aria-labelledby": "amq-title", hidden: "" }, [
    el("div", { class: "head" }, [el("div", { class: "t" }, [title, subtitle]), closeBtn]), bar, log, typing, acts, composer]);
  var wrap = el("div", { class: "w" }, [panel, launcher]);
  if (root.adoptedStyleSheets && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
    var sheet = new CSSStyleSheet(); // a constructed sheet: pages whose CSP forbids inline styles still style the widget
    sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
  } else { root.appendChild(el("style", { text: CSS })); }
  root.appendChild(wrap);

  render();
  composer.addEventListener("submit", function (e) { e.preventDefault(); submitText(); });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submitText(); }
  });
  input.addEventListener("input", function () { sendTyping(true); });
  panel.addEventListener("keydown", function (e) { if (e.key === "Escape") { setOpen(false); launcher.focus(); } });

  // ---- rendering ----
  function scrollDown() { log.scrollTop = log.scrollHeight; }
  function note(text) { log.appendChild(el("p", { class: "note", text: text })); scrollDown(); }
  function bubble(cls, who, text) {
    var node = el("div", { class: "m " + cls }, [
      el("span", { class: "who", text: who }), el("div", { class: "b", text: text })]);
    return node;
  }
  function placeBySeq(node, seq) {
    node.dataset.seq = seq;
    rendered[seq] = node;
    var after = null;
    Object.keys(rendered).forEach(function (s) { if (+s > seq && (!after || +s < +after.dataset.seq)) after = rendered[s]; });
    var firstPending = log.querySelector(".m.wait");
    log.insertBefore(node, after || firstPending || ratingCard || null);
  }
  function showMessage(m) {
    // m: {seq, id, sender: user|agent|bot|system, text, name}
    if (m.seq) lastSeq = Math.max(lastSeq, m.seq);
    if (m.seq && rendered[m.seq]) return;
    if (welcomeEl && m.sender === "bot" && cfg && m.text === cfg.welcomeMessage) { welcomeEl.remove(); welcomeEl = null; }
    var node;
    if (m.sender === "system") { node = el("p", { class: "note", text: m.text }); }
    else if (m.sender === "user") { node = bubble("me", "You", m.text); }
    else {
      var who = m.name || (m.sender === "bot" ? "AI Assistant" : (agentName || "Agent"));
      node = bubble(m.sender === "bot" ? "ai" : "agent", who, m.text);
    }
    if (m.seq) placeBySeq(node, m.seq); else log.appendChild(node);
    if (m.sender !== "user") updateUnread();
    scrollDown();
  }
  function statusLine() {
    if (mode === "waiting") return saved.queueText || "Waiting for a person\u2026";
    if (mode === "agent") return "You are chatting with " + (agentName || "an agent");
    if (mode === "closed") return "This chat has ended";
    return "Our assistant answers right away";
  }
  function render() {
    subtitle.textContent = statusLine();
    var closed = mode === "closed";
    humanBtn.hidden = mode !== "ai" || !cfg;
    newBtn.hidden = !closed;
    composer.hidden = closed || !cfg;
    bar.hidden = !cfg || joined || !saved.sessionId;
    bar.textContent = joinedOnce ? "Reconnecting\u2026" : "Connecting\u2026";
  }
  function updateUnread() {
    var seen = load().seenSeq || 0, count = 0;
    if (isOpen && document.visibilityState !== "hidden") { save({ seenSeq: lastSeq }); seen = lastSeq; }
    Object.keys(rendered).forEach(function (s) {
      if (+s > seen && !rendered[s].classList.contains("me")) count++;
    });
    badge.hidden = count === 0;
    badge.textContent = count > 9 ? "9+" : String(count);
    launcher.setAttribute("aria-label", (isOpen ? "Close chat" : "Open chat") + (count ? " (" + count + " unread)" : ""));
  }
  function setOpen(open) {
    isOpen = open;
    panel.hidden = !open;
    launcher.setAttribute("aria-expanded", String(open));
    if (open) {
      start();
      updateUnread();
      scrollDown();
      setTimeout(function () { (composer.hidden ? log : input).focus(); }, 0);
    } else { updateUnread(); }
  }

  // ---- HTTP ----
  function call(method, path, body, auth) {
    var headers = { "Content-Type": "application/json" };
    if (auth) headers.Authorization = "Bearer " + auth;
    return fetch(API + path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined, mode: "cors", credentials: "omit" })
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (data) {
          if (!resp.ok) { var err = new Error(data.message || resp.statusText); err.status = resp.status; err.code = data.code; throw err; }
          return data;
        });
      });
  }
  function identity() { return saved.identity || {}; }
  function visitorFields() {
    var id = identity(), info = Object.assign({}, saved.prechat || {});
    if (id.name) info.name = id.name;
    if (id.email) info.email = id.email;
    var f = { tenantId: cfg.tenantId, siteKey: SITE_KEY, fingerprint: saved.fingerprint, domain: location.hostname,
      origin: location.origin, url: location.href, referrer: document.referrer || null };
    if (saved.sessionId) f.sessionId = saved.sessionId;
    if (saved.sessionSecret) f.sessionSecret = saved.sessionSecret;
    if (id.userId) { f.userId = id.userId; if (id.userHash) f.userHash = id.userHash; }
    if (Object.keys(info).length) f.userInfo = info;
    return f;
  }
  function forgetSession() {
    save({ sessionId: null, sessionSecret: null, token: null, tokenExp: 0, seenSeq: 0, pending: [], rated: false,
      queueText: null, sessionUser: null });
  }
  function applyStatus(status, aiMode) {
    if (status === "closed") mode = "closed";
    else if (status === "waiting") mode = "waiting";
    else if (status === "active" && aiMode !== undefined) mode = aiMode === false ? "agent" : "ai";
    render();
    if (mode === "closed" && !saved.rated) showRating();
  }
  // Create the session (or, with a stored one, resume it and learn its status). Publishable-key mode only.
  function openSession() {
    return call("POST", "/api/chat/session", visitorFields(), PK).then(function (data) {
      var changes = { sessionId: data.sessionId, sessionUser: identity().userId || null };
      if (data.sessionSecret) changes.sessionSecret = data.sessionSecret;
      if (data.sessionId !== saved.sessionId) { changes.token = null; changes.tokenExp = 0; }
      save(changes);
      applyStatus(data.status, data.aiMode);
      if (data.status === "waiting") refreshStatus();
    });
  }
  function ensureToken(force) {
    if (!force && saved.token && saved.tokenExp - Date.now() > 60000) return Promise.resolve(saved.token);
    return call("POST", "/api/chat/anonymous-token", visitorFields(), PK).then(function (data) {
      var changes = { token: data.token, tokenExp: Date.now() + data.expiresIn * 1000, sessionId: data.sessionId };
      if (data.sessionSecret) changes.sessionSecret = data.sessionSecret;
      save(changes);
      return data.token;
    });
  }
  function refusedBy(err) { return err && (err.status === 401 || err.status === 403) && err.code !== "RATE_LIMIT_EXCEEDED"; }

  // ---- the socket ----
  function start() {
    if (!cfg || stopped || ws || connecting) return;
    if (mode === "closed" && saved.sessionId && !isOpen) return;
    connecting = true;
    var ready = Promise.resolve();
    if (PK) {
      ready = (saved.sessionId && joinedOnce ? Promise.resolve() : openSession().catch(function (err) {
        if (err.status === 401 && identity().userId) { // a userHash the server does not vouch for: go on anonymously
          console.warn("amoiq-chat: identify() was refused (" + err.message + "); chatting anonymously");
          save({ identity: Object.assign({}, identity(), { userId: null, userHash: null }) });
          return openSession();
        }
        if (refusedBy(err) && saved.sessionId) { forgetSession(); clearLog(); return openSession(); }
        throw err;
      })).then(function () { return ensureToken(attempt > 0 && !lastOpened); });
    } else if (!saved.sessionId) {
      save({ sessionId: randomId("session_") });
    }
    ready.then(function () {
      connecting = false;
      var url = WS_API + "/ws/" + encodeURIComponent(saved.sessionId) + "?since=" + lastSeq;
      if (PK) url += "&token=" + encodeURIComponent(saved.token);
      var sock = new WebSocket(url);
      ws = sock;
      lastOpened = false;
      sock.onopen = function () { wsOpen = true; lastOpened = true; };
      sock.onmessage = function (e) { var f; try { f = JSON.parse(e.data); } catch (x) { return; } onFrame(f); };
      sock.onclose = function (e) { if (ws === sock) dropped(e.code); };
    }, function (err) {
      connecting = false;
      if (err && err.status === 404) return refuse("This chat is not available right now.");
      if (refusedBy(err)) { forgetSession(); }
      retry();
    });
  }
  var joinedOnce = false, lastOpened = true;
  function dropped(code) {
    ws = null; wsOpen = false; joined = false;
    render();
    if (code === 1008 && refusedText) return;
    retry();
  }
  function retry() {
    if (stopped) return;
    clearTimeout(retryTimer);
    var delay = Math.min(30000, 500 * Math.pow(2, attempt)) * (0.75 + Math.random() * 0.5);
    attempt++;
    retryTimer = setTimeout(start, delay);
  }
  function reconnectNow() {
    if (ws) { var old = ws; ws = null; old.close(); joined = false; }
    attempt = 0; clearTimeout(retryTimer); start();
  }
  function send(frame) { if (ws && wsOpen) ws.send(JSON.stringify(frame)); }
  function onJoined(frame) {
    if (!PK && !joinedOnce) refreshStatus(); // the tokenless widget learns a resumed session's status here
    joined = true; joinedOnce = true; attempt = 0;
    if (frame.sessionSecret) save({ sessionSecret: frame.sessionSecret });
    render();
    (load().pending || []).forEach(function (p) { drawPending(p); sendMessageFrame(p); });
  }
  function onFrame(f) {
    switch (f.type) {
      case "connection_status":
        if (f.joined || f.status === "joined") onJoined(f);
        else if (!PK) {
          var j = visitorFields(); j.type = "join"; send(j);
        }
        break;
      case "ack": acked(f); break;
      case "meta_message_created":
        var m = f.message || {};
        showMessage({ seq: m.seq, id: m.id, sender: m.sender, text: m.text });
        break;
      case "message":
        var md = f.metadata || {};
        showMessage({ seq: f.seq, id: f.id, sender: md.isAI ? "bot" : "agent", text: f.message || f.text, name: md.agentName });
        break;
      case "typing":
        clearTimeout(typingTimer);
        typing.textContent = f.isTyping ? (f.sender === "ai" ? "Assistant" : (f.agentName || agentName || "Agent")) + " is typing\u2026" : "";
        if (f.isTyping) typingTimer = setTimeout(function () { typing.textContent = ""; }, 8000);
        break;
      case "queue_update":
        if (f.status && f.status !== "waiting") break;
        queueFigures(f.position, f.estimatedWait);
        break;
      case "agent_joined":
        agentName = f.agentName || "An agent"; mode = "agent"; typing.textContent = "";
        note(agentName + " joined the chat"); render(); break;
      case "agent_left":
        mode = "ai"; note(f.message || (f.agentName || "The agent") + " left the chat"); render(); break;
      case "chat_closed":
        mode = "closed"; typing.textContent = ""; note(f.message || "This chat has been closed."); render();
        if (!saved.rated) showRating();
        break;
      case "rating_received": ratingDone(); break;
      case "error": frameError(f); break;
    }
  }
  var refusedText = "";
  function frameError(f) {
    if (f.clientMessageId && pendingEls[f.clientMessageId]) {
      if (f.code === "RATE_LIMIT_EXCEEDED") { setTimeout(function () { resendPending(f.clientMessageId); }, 1500); return; }
      failPending(f.clientMessageId, f.message);
    } else if (f.code === "FORBIDDEN" && /origin/i.test(f.message || "")) {
      refuse("This chat is not available on this website.");
    } else if (f.frameType === "rating") { ratingFailed(f.message); }
  }
  function clearLog() {
    log.textContent = ""; rendered = {}; pendingEls = {}; lastSeq = 0; mode = "ai"; agentName = "";
    if (cfg) showWelcome();
  }
  // Shown at once; when the assistant stores the welcome as its first message, that one replaces it.
  var welcomeEl = null;
  function showWelcome() {
    if (cfg.welcomeMessage) welcomeEl = log.appendChild(bubble("agent", cfg.businessName || "", cfg.welcomeMessage));
  }

  // ---- sending ----
  function submitText() {
    var text = input.value.trim();
    if (!text || mode === "closed") return;
    if (prechatPending()) return;
    input.value = "";
    sendTyping(false);
    var p = { id: randomId("cm_"), text: text };
    save({ pending: (load().pending || []).concat([p]) });
    drawPending(p);
    sendMessageFrame(p);
    start();
  }
  function drawPending(p) {
    if (pendingEls[p.id]) return;
    var node = bubble("me wait", "You", p.text);
    node.appendChild(el("span", { class: "st", text: "Sending\u2026" }));
    pendingEls[p.id] = node;
    log.appendChild(node);
    scrollDown();
  }
  function sendMessageFrame(p) {
    if (!joined) return;
    var f = visitorFields(); delete f.sessionSecret;
    f.type = "message"; f.message = p.text; f.clientMessageId = p.id; f.timestamp = new Date().toISOString();
    send(f);
  }
  function resendPending(id) {
    (load().pending || []).forEach(function (p) { if (p.id === id) sendMessageFrame(p); });
  }
  function dropPending(id) {
    save({ pending: (load().pending || []).filter(function (p) { return p.id !== id; }) });
    var node = pendingEls[id]; delete pendingEls[id];
    return node;
  }
  function acked(f) {
    var node = dropPending(f.clientMessageId);
    if (!node) return;
    if (rendered[f.seq]) { node.remove(); return; }
    node.classList.remove("wait");
    var st = node.querySelector(".st"); if (st) st.remove();
    node.remove();
    placeBySeq(node, f.seq);
    lastSeq = Math.max(lastSeq, f.seq);
  }
  function failPending(id, why) {
    var node = dropPending(id);
    if (!node) return;
    node.classList.remove("wait"); node.classList.add("failed");
    var st = node.querySelector(".st"); if (st) st.textContent = "Not sent: " + (why || "error");
  }
  var typingSent = false, typingOff = null;
  function sendTyping(on) {
    clearTimeout(typingOff);
    if (on) typingOff = setTimeout(function () { sendTyping(false); }, 3000);
    if (on === typingSent || !joined) return;
    typingSent = on;
    send({ type: "typing", isTyping: on });
  }

  // ---- escalation, queue, rating ----
  function queueFigures(position, wait) {
    mode = "waiting";
    var text = position ? "You are number " + position + " in the queue" + (wait ? " \u00b7 about " + wait + " min" : "") : "Waiting for a person\u2026";
    save({ queueText: text });
    render();
  }
  function escalate() {
    if (!saved.sessionId) return;
    humanBtn.disabled = true;
    call("POST", "/api/widgets/escalate/" + encodeURIComponent(SITE_KEY) + "/" + encodeURIComponent(saved.sessionId),
      { reason: "customer_requested_human" })
      .then(function (res) {
        var d = res.data || {};
        if (d.status === "active") return;
        queueFigures(d.queuePosition, d.estimatedWait);
        note("We are finding a person to help you.");
      }, function (err) { note("We could not reach a person just now (" + err.message + "). Please try again."); })
      .then(function () { humanBtn.disabled = false; });
  }
  // The session's status and queue figures from the public route (after a reload; the socket then keeps them live).
  function refreshStatus() {
    call("GET", "/api/widgets/queue-position/" + encodeURIComponent(SITE_KEY) + "/" + encodeURIComponent(saved.sessionId))
      .then(function (res) {
        var d = res.data || {};
        if (d.status === "waiting") queueFigures(d.position, d.estimatedWait); else if (d.status) applyStatus(d.status);
      }, function () { /* an older server: the next queue_update will say */ });
  }
  var ratingCard = null, chosen = 0;
  function showRating() {
    if (ratingCard) return;
    var stars = [];
    var group = el("div", { class: "stars", role: "group", "aria-label": "Rate this chat from 1 to 5" });
    for (var i = 1; i <= 5; i++) {
      (function (n) {
        var b = el("button", { class: "star", type: "button", "aria-pressed": "false", "aria-label": n + " out of 5", text: "\u2605",
          onclick: function () { chosen = n; stars.forEach(function (s, k) { s.setAttribute("aria-pressed", String(k < n)); }); submit.disabled = false; } });
        stars.push(b); group.appendChild(b);
      })(i);
    }
    var comment = el("textarea", { rows: "2", maxlength: "2000", "aria-label": "Comment (optional)", placeholder: "Anything to add? (optional)" });
    var submit = el("button", { class: "btn solid", type: "button", text: "Send rating", disabled: "" });
    submit.addEventListener("click", function () { sendRating(chosen, comment.value.trim()); });
    ratingCard = el("div", { class: "card", role: "form", "aria-label": "Rate this chat" }, [
      el("p", { text: "How was your chat?" }), group, comment, submit]);
    log.appendChild(ratingCard); scrollDown();
  }
  function sendRating(n, comment) {
    if (!n) return;
    var body = { sessionId: saved.sessionId, rating: n };
    if (comment) body.comment = comment;
    if (PK) {
      if (saved.sessionSecret) body.sessionSecret = saved.sessionSecret;
      call("POST", "/api/chat/rating", body, saved.token || PK).then(ratingDone, function (e) {
        if (e.status === 409) ratingDone(); else ratingFailed(e.message);
      });
    } else { body.type = "rating"; send(body); }
  }
  function ratingDone() {
    save({ rated: true });
    if (ratingCard) { ratingCard.replaceWith(el("p", { class: "note", text: "Thank you for your rating!" })); ratingCard = null; }
  }
  function ratingFailed(why) { note("Your rating was not sent: " + why); }
  function restart() {
    forgetSession(); clearLog(); ratingCard = null; joinedOnce = false;
    if (ws) { var old = ws; ws = null; old.close(); }
    joined = false; render();
    if (isOpen) start();
  }

  // ---- pre-chat form ----
  var prechatCard = null;
  function prechatPending() {
    if (!cfg.enablePrechatForm || saved.prechat || identity().userId || saved.sessionId && joinedOnce && lastSeq) return false;
    if (!prechatCard) showPrechat();
    return true;
  }
  function showPrechat() {
    var inputs = [];
    var form = el("form", { class: "card", "aria-label": "Before we start" }, [el("p", { text: "Before we start, please tell us:" })]);
    (cfg.prechatFields || []).forEach(function (fd) {
      var field = fd.type === "select" ? el("select", { name: fd.name }) : el("input", { name: fd.name, type: fd.type || "text" });
      (fd.options || []).forEach(function (o) { field.appendChild(el("option", { value: o, text: o })); });
      if (fd.required) field.setAttribute("required", "");
      inputs.push(field);
      form.appendChild(el("label", {}, [document.createTextNode(fd.label || fd.name), field]));
    });
    form.appendChild(el("button", { class: "btn solid", type: "submit", text: "Start chat" }));
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var values = {};
      inputs.forEach(function (f) { if (f.value) values[f.name] = f.value; });
      save({ prechat: values });
      form.remove(); prechatCard = null;
      if (saved.sessionId && PK) openSession();
      submitText();
    });
    prechatCard = form;
    log.appendChild(form); scrollDown();
    var first = form.querySelector("input,select"); if (first) first.focus();
  }

  // ---- refusal and start-up ----
  function refuse(text) {
    refusedText = text; stopped = true;
    clearTimeout(retryTimer);
    if (ws) { var old = ws; ws = null; old.close(); }
    log.textContent = "";
    log.appendChild(el("p", { class: "refused", role: "alert", text: text }));
    composer.hidden = true; acts.hidden = true; bar.hidden = true; typing.hidden = true;
    subtitle.textContent = "Unavailable";
  }
  function applyConfig(c) {
    cfg = c;
    host.className = c.position || "bottom-right";
    host.style.setProperty("--p", /^#[0-9a-fA-F]{6}$/.test(c.primaryColor || "") ? c.primaryColor : "#0969da");
    title.textContent = c.widgetTitle || "Chat";
    launcher.title = c.widgetTitle || "Chat";
    showWelcome();
    render();
  }
  function boot(tries) {
    call("GET", "/api/widgets/" + encodeURIComponent(SITE_KEY) + "/config").then(function (c) {
      applyConfig(c);
      if (saved.sessionId || isOpen) start(); // a conversation under way (for the unread count), or opened already
    }, function (err) {
      host.className = "bottom-right"; host.style.setProperty("--p", "#57606a");
      if (err.status === 403) refuse("This chat is not available on this website.");
      else if (err.status === 404 || !SITE_KEY) refuse("This chat is not available right now.");
      else setTimeout(function () { boot(tries + 1); }, Math.min(30000, 1000 * Math.pow(2, tries)));
    });
  }

  window.addEventListener("storage", function (e) {
    if (e.key !== STORE_KEY) return;
    var before = saved.sessionId, was = saved.identity && saved.identity.userId;
    saved = load();
    if (saved.sessionId !== before || (saved.identity && saved.identity.userId) !== was) {
      clearLog(); joinedOnce = false; if (saved.sessionId) reconnectNow(); else if (ws) { ws.close(); ws = null; }
    }
    updateUnread();
  });
  window.addEventListener("online", function () { if (!ws && cfg && !stopped) { attempt = 0; start(); } });
  document.addEventListener("visibilitychange", updateUnread);

  // ---- public API ----
  var api = {
    version: VERSION,
    open: function () { setOpen(true); },
    close: function () { setOpen(false); },
    toggle: function () { setOpen(!isOpen); },
    /** Identify a logged-in visitor: {userId, userHash, name, email}. */
    identify: function (who) {
      who = who || {};
      var prev = identity();
      save({ identity: { userId: who.userId ? String(who.userId) : null, userHash: who.userHash || null, name: who.name || null, email: who.email || null } });
      if (saved.sessionId && saved.sessionUser && saved.sessionUser !== saved.identity.userId) { forgetSession(); clearLog(); }
      if (prev.userId !== saved.identity.userId || prev.name !== saved.identity.name || prev.email !== saved.identity.email) {
        joinedOnce = false; save({ token: null, tokenExp: 0 });
        if (cfg && (ws || saved.sessionId)) reconnectNow();
      }
    },
    /** Forget the visitor (on logout): the next chat is a new, anonymous conversation. */
    reset: function () { save({ identity: null, prechat: null }); restart(); },
    push: function (call) { if (call && typeof api[call[0]] === "function") api[call[0]].apply(null, call.slice(1)); }
  };
  window.AmoiqChat = api;
  (document.body || document.documentElement).appendChild(host);
  queued.forEach(api.push);
  if (SITE_KEY) boot(0); else refuse("This chat is not set up: data-site-key is missing.");
})();
