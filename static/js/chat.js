// The chat page: one websocket (CONTRACTS §5), streaming replies into the page, reconnect and resume by itself.
(() => {
  "use strict";
  const chat = document.getElementById("chat");
  if (!chat) return;
  const messagesEl = document.getElementById("messages");
  const form = document.getElementById("composer");
  const input = document.getElementById("composer-input");
  const modelSelect = document.getElementById("model-select");
  const systemInput = document.getElementById("system-prompt");
  const stopButton = document.getElementById("stop-button");
  const sendButton = document.getElementById("send-button");
  const statusEl = document.getElementById("connection-status");
  const announcer = document.getElementById("announcer");

  let conversationId = chat.dataset.conversationId ? Number(chat.dataset.conversationId) : null;
  let socket = null;
  let retryDelay = 500;
  let requestCounter = 0;
  const pending = new Map(); // request_id -> content (to retry after an error)
  const replies = new Map(); // message id -> {seq, el}
  let streamingId = null;

  // --- rendering ---------------------------------------------------------------------------------------
  const render = window.chatwebRender || { content: (el, text) => { el.textContent = text; } };

  function messageEl(id, role, parentId) {
    let el = document.getElementById(`message-${id}`);
    if (el) return el;
    document.getElementById("empty-hint")?.remove();
    el = document.createElement("article");
    el.className = `message ${role}`;
    el.id = `message-${id}`;
    el.dataset.messageId = id;
    el.dataset.role = role;
    el.dataset.parentId = parentId || "";
    const meta = document.createElement("header");
    meta.className = "message-meta";
    const roleEl = document.createElement("span");
    roleEl.className = "role";
    roleEl.textContent = role === "assistant" ? modelSelect.value : "You";
    meta.append(roleEl);
    const content = document.createElement("div");
    content.className = "content";
    el.append(meta, content);
    if (role === "assistant") {
      const footer = document.createElement("footer");
      footer.className = "usage muted";
      el.append(footer);
    }
    messagesEl.append(el);
    return el;
  }

  function reply(id) {
    let state = replies.get(id);
    if (!state) {
      const el = messageEl(id, "assistant");
      const existing = el.querySelector(".content");
      state = { seq: 0, el, content: existing ? existing.textContent : "", reasoning: "" };
      replies.set(id, state);
    }
    return state;
  }

  function setReasoning(state) {
    if (!state.reasoning) return;
    let details = state.el.querySelector("details.reasoning");
    if (!details) {
      details = document.createElement("details");
      details.className = "reasoning";
      const summary = document.createElement("summary");
      summary.textContent = "Reasoning";
      const text = document.createElement("div");
      text.className = "reasoning-text";
      details.append(summary, text);
      state.el.querySelector(".content").before(details);
    }
    details.querySelector(".reasoning-text").textContent = state.reasoning;
  }

  function showContent(state) {
    render.content(state.el.querySelector(".content"), state.content, { streaming: state.el.dataset.status === "streaming" });
    setReasoning(state);
  }

  function keepScrolled() {
    const nearBottom = messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 120;
    if (nearBottom) messagesEl.scrollTop = messagesEl.scrollHeight;
  }

  function setStreaming(id) {
    streamingId = id;
    stopButton.hidden = id === null;
  }

  function usageText(u) {
    if (!u) return "";
    let text = `${u.prompt_tokens} + ${u.completion_tokens} tokens · $${u.estimated_cost}`;
    if (u.ttft_ms !== null && u.ttft_ms !== undefined) text += ` · first token ${u.ttft_ms} ms`;
    if (u.duration_ms && u.completion_tokens) text += ` · ${(u.completion_tokens / (u.duration_ms / 1000)).toFixed(1)} tokens/s`;
    return text;
  }

  function showError(frame) {
    const text = frame.message || "Something went wrong.";
    let host = frame.message_id ? document.getElementById(`message-${frame.message_id}`) : null;
    if (!host) {
      host = document.createElement("div");
      host.className = "message system-error";
      messagesEl.append(host);
    }
    host.querySelector(".message-error")?.remove();
    const p = document.createElement("p");
    p.className = "message-error";
    p.setAttribute("role", "alert");
    p.textContent = text + " ";
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "link retry";
    retry.textContent = "Retry";
    retry.addEventListener("click", () => {
      p.remove();
      if (frame.message_id) send({ type: "chat.regenerate", message_id: frame.message_id, request_id: nextRequestId() });
      else if (pending.has(frame.request_id)) sendMessage(pending.get(frame.request_id));
    });
    p.append(retry);
    host.append(p);
    keepScrolled();
  }

  // --- protocol ----------------------------------------------------------------------------------------
  const handlers = {
    "chat.started"(f) {
      if (!conversationId) {
        conversationId = f.conversation_id;
        chat.dataset.conversationId = conversationId;
        history.replaceState(null, "", `/c/${conversationId}/`);
      }
      if (f.user_message_id && !document.getElementById(`message-${f.user_message_id}`)) {
        const el = messageEl(f.user_message_id, "user", f.parent_id);
        el.querySelector(".content").textContent = f.user_content;
      }
      const state = reply(f.message_id);
      state.el.dataset.status = "streaming";
      state.el.dataset.parentId = f.user_message_id || f.parent_id || "";
      if (f.model) state.el.querySelector(".role").textContent = f.model;
      state.el.querySelector(".usage").textContent = "streaming…";
      setStreaming(f.message_id);
      keepScrolled();
    },
    "chat.delta"(f) {
      const state = reply(f.message_id);
      if (f.seq <= state.seq) return;
      state.seq = f.seq;
      state.content += f.content || "";
      state.reasoning += f.reasoning || "";
      state.el.dataset.status = "streaming";
      setStreaming(f.message_id);
      showContent(state);
      keepScrolled();
    },
    "chat.snapshot"(f) {
      const state = reply(f.message_id);
      state.seq = f.seq;
      state.content = f.content || "";
      state.reasoning = f.reasoning || "";
      state.el.dataset.status = f.status;
      if (f.status === "streaming") setStreaming(f.message_id);
      showContent(state);
      keepScrolled();
    },
    "chat.done"(f) {
      const state = reply(f.message_id);
      state.el.dataset.status = f.status || "complete";
      state.el.className = `message assistant status-${state.el.dataset.status}`;
      showContent(state);
      const footer = state.el.querySelector(".usage");
      footer.textContent = usageText(f.usage);
      if (f.usage && f.usage.estimated) {
        const mark = document.createElement("span");
        mark.className = "estimated";
        mark.title = "The provider reported no usage; counted by chatweb";
        mark.textContent = " · estimated";
        footer.append(mark);
      }
      if (streamingId === f.message_id) setStreaming(null);
      announcer.textContent = f.finish_reason === "stopped" ? "Reply stopped." : "Reply finished.";
      document.dispatchEvent(new CustomEvent("chatweb:done", { detail: f }));
    },
    "chat.error"(f) {
      showError(f);
      if (f.message_id && streamingId === f.message_id) setStreaming(null);
      announcer.textContent = `Error: ${f.message}`;
    },
  };

  function send(frame) {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      showError({ message: "Not connected; reconnecting. Try again in a moment." });
      return false;
    }
    socket.send(JSON.stringify(frame));
    return true;
  }

  function nextRequestId() {
    requestCounter += 1;
    return `r${Date.now().toString(36)}${requestCounter}`;
  }

  function collectParams() {
    const params = {};
    for (const field of document.querySelectorAll("[data-param]")) {
      const raw = field.value.trim();
      if (!raw) continue;
      const type = field.dataset.type;
      if (type === "int" || type === "float") params[field.dataset.param] = Number(raw);
      else if (type === "json" || raw.startsWith("[") || raw.startsWith("{")) {
        try { params[field.dataset.param] = JSON.parse(raw); } catch { params[field.dataset.param] = raw; }
      } else params[field.dataset.param] = raw;
    }
    return params;
  }

  function sendMessage(content, parentId = null) {
    const requestId = nextRequestId();
    const frame = {
      type: "chat.send", request_id: requestId, conversation_id: conversationId, model: modelSelect.value,
      content, system: systemInput.value, params: collectParams(),
    };
    if (parentId) frame.parent_id = parentId;
    pending.set(requestId, content);
    return send(frame);
  }
  window.chatweb = { send, sendMessage, get conversationId() { return conversationId; } };

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/chat/`);
    statusEl.textContent = "Connecting…";
    socket.addEventListener("open", () => {
      retryDelay = 500;
      statusEl.textContent = "Connected";
      if (conversationId) send({ type: "chat.subscribe", conversation_id: conversationId });
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      handlers[frame.type]?.(frame);
    });
    socket.addEventListener("close", () => {
      statusEl.textContent = "Disconnected; reconnecting…";
      const delay = retryDelay * (0.75 + Math.random() * 0.5);
      retryDelay = Math.min(retryDelay * 2, 8000);
      setTimeout(connect, delay);
    });
  }

  // --- controls ------------------------------------------------------------------------------------------
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const content = input.value;
    if (!content.trim() || !modelSelect.value) return;
    if (sendMessage(content)) input.value = "";
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit(sendButton);
    }
  });
  function stop() {
    if (streamingId) send({ type: "chat.stop", message_id: streamingId });
  }
  stopButton.addEventListener("click", stop);
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") stop(); });

  for (const el of messagesEl.querySelectorAll(".message.assistant[data-status='streaming']")) {
    setStreaming(Number(el.dataset.messageId));
  }
  const saved = JSON.parse(document.getElementById("conversation-params")?.textContent || "{}");
  for (const [name, value] of Object.entries(saved)) {
    const field = document.querySelector(`[data-param="${name}"]`);
    if (field) field.value = typeof value === "object" ? JSON.stringify(value) : value;
  }
  messagesEl.scrollTop = messagesEl.scrollHeight;
  connect();
})();
