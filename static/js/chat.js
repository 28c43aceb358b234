// The chat page: one websocket (CONTRACTS §5), streaming replies into the page, reconnect and resume by itself;
// message actions (copy, edit and resend, regenerate, versions, delete).
(() => {
  "use strict";
  const chat = document.getElementById("chat");
  if (!chat) return;
  const messagesEl = document.getElementById("messages");
  const form = document.getElementById("composer");
  const input = document.getElementById("composer-input");
  const modelSelect = document.getElementById("model-select");
  const stopButton = document.getElementById("stop-button");
  const sendButton = document.getElementById("send-button");
  const statusEl = document.getElementById("connection-status");
  const counterEl = document.getElementById("composer-count");
  const noticeEl = document.getElementById("composer-notice");
  // the server's limit (commands.MAX_CONTENT_CHARS), handed over by the page
  const maxChars = Number(form.dataset.maxChars) || 100000;
  const ui = window.chatwebUI;
  const panel = () => window.chatwebPanel;

  let conversationId = chat.dataset.conversationId ? Number(chat.dataset.conversationId) : null;
  let socket = null;
  let retryDelay = 500;
  let requestCounter = 0;
  const pending = new Map(); // request_id -> content (to retry after an error)
  const edits = new Map(); // request_id -> id of the user message being edited
  const replies = new Map(); // message id -> {seq, content, reasoning, frame}
  let streamingId = null;
  const CONTINUE_PROMPT = "Continue exactly where your previous reply stopped.";
  // The composer's text stays until the server accepts it (`chat.started` for its request): `draft` is that request,
  // in flight; `queued` says the text waits for the streaming reply to end, so the next prompt holds that reply.
  let draft = null; // {requestId, content}
  let queued = false;

  // --- rendering ---------------------------------------------------------------------------------------
  const render = window.chatwebRender || {
    content: (el, text) => { el.textContent = text; },
    enhance: () => {},
    enhanceLater: () => {},
    copyText: async (text) => navigator.clipboard.writeText(text),
  };

  function button(action, label, extraClass = "") {
    const b = document.createElement("button");
    b.type = "button";
    b.className = `ghost ${extraClass}`.trim();
    b.dataset.action = action;
    b.textContent = label;
    return b;
  }

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
    content.className = role === "assistant" ? "content markdown" : "content";
    const foot = document.createElement("footer");
    foot.className = "message-foot";
    const actions = document.createElement("span");
    actions.className = "message-actions";
    actions.append(button("copy", "Copy"));
    if (role === "user") actions.append(button("edit", "Edit"));
    else actions.append(button("regenerate", "Regenerate"));
    actions.append(button("delete", "Delete", "danger"));
    if (role === "assistant") {
      const usage = document.createElement("span");
      usage.className = "usage muted";
      foot.append(usage);
    }
    foot.append(actions);
    el.append(meta, content, foot);
    messagesEl.append(el);
    return el;
  }

  /** The state of a reply; its element is looked up each time (a branch switch may have replaced or removed it). */
  function reply(id) {
    let state = replies.get(id);
    if (!state) {
      const existing = document.querySelector(`#message-${id} template.source`);
      state = { seq: 0, content: existing ? existing.content.textContent : "", reasoning: "", frame: 0 };
      replies.set(id, state);
    }
    state.el = document.getElementById(`message-${id}`);
    if (state.el) state.el.dataset.live = "yes"; // rendered here; the server's rendering replaces it when done
    return state;
  }

  function setReasoning(state) {
    if (!state.reasoning || !state.el) return;
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
    const streaming = state.el.dataset.status === "streaming";
    details.querySelector("summary").textContent = streaming && !state.content ? "Thinking…" : "Reasoning";
    details.querySelector(".reasoning-text").textContent = state.reasoning;
  }

  function showContent(state) {
    if (!state.el) return;
    render.content(state.el.querySelector(".content"), state.content, { streaming: state.el.dataset.status === "streaming" });
    setReasoning(state);
  }

  /** Re-render one reply at most once per animation frame, however many deltas arrive. */
  function scheduleRender(id) {
    const state = replies.get(id);
    if (!state || state.frame) return;
    state.frame = requestAnimationFrame(() => {
      state.frame = 0;
      reply(id);
      showContent(state);
      keepScrolled();
    });
  }

  function nearBottom() {
    return messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 160;
  }
  let stickToBottom = true;
  messagesEl.addEventListener("scroll", () => { stickToBottom = nearBottom(); }, { passive: true });
  function keepScrolled(force = false) {
    if (force || stickToBottom) messagesEl.scrollTop = messagesEl.scrollHeight;
  }

  function setStreaming(id) {
    streamingId = id;
    stopButton.hidden = id === null;
    if (id === null && queued) setTimeout(sendQueued, 0);
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
    const ofDraft = frame.request_id && frame.request_id === frame.draftRequestId;
    if (ofDraft) {
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "link retry";
      retry.textContent = "Retry";
      retry.addEventListener("click", () => {
        host.classList.contains("system-error") ? host.remove() : p.remove();
        form.requestSubmit(sendButton);
      });
      p.append(retry);
    } else if (frame.message_id || pending.has(frame.request_id)) {
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
    }
    const foot = host.querySelector(".message-foot");
    if (foot) foot.before(p);
    else host.append(p);
    keepScrolled();
  }

  /** Replace messages by their server rendering (the one policy), e.g. a reply that has just finished. */
  async function refreshMessages(ids) {
    if (!conversationId) return;
    const query = ids ? `?ids=${ids.filter(Boolean).join(",")}` : "";
    const fresh = await ui.fragment(`/c/${conversationId}/messages/${query}`);
    if (!ids) {
      messagesEl.replaceChildren(fresh);
    } else {
      for (const article of [...fresh.querySelectorAll("article.message")]) {
        const old = document.getElementById(article.id);
        const state = replies.get(Number(article.dataset.messageId));
        if (state && article.dataset.status === "streaming") continue; // still live here
        if (old) old.replaceWith(article);
      }
    }
    render.enhanceLater(messagesEl);
  }

  function removeFrom(el, { inclusive }) {
    if (!el) return;
    while (el.nextElementSibling) el.nextElementSibling.remove();
    if (inclusive) el.remove();
  }

  // --- protocol ----------------------------------------------------------------------------------------
  const handlers = {
    "chat.started"(f) {
      if (draft && f.request_id === draft.requestId) draftAccepted();
      if (!conversationId) {
        conversationId = f.conversation_id;
        chat.dataset.conversationId = conversationId;
        // a temporary chat keeps the new-chat address: it is gone once this tab lets go of it (temporary.js)
        if (!f.temporary) history.replaceState(null, "", `/c/${conversationId}/`);
        const title = (f.user_content || "").trim().split("\n")[0].slice(0, 60) || "Untitled";
        panel()?.conversationStarted(conversationId, title, !f.temporary);
        if (f.temporary) window.chatwebTemporary?.started();
      }
      if (edits.has(f.request_id)) {
        // the edited message's branch leaves the view; the new version takes its place
        removeFrom(document.getElementById(`message-${edits.get(f.request_id)}`), { inclusive: true });
        edits.delete(f.request_id);
      } else if (!f.user_message_id && f.parent_id) {
        // a regenerated reply: what followed its question belongs to the other version now
        const parent = document.getElementById(`message-${f.parent_id}`);
        if (!parent) return; // another branch than the one shown
        removeFrom(parent, { inclusive: false });
      }
      if (f.user_message_id && !document.getElementById(`message-${f.user_message_id}`)) {
        const el = messageEl(f.user_message_id, "user", f.parent_id === f.user_message_id ? "" : f.parent_id);
        el.querySelector(".content").textContent = f.user_content;
        window.chatwebAttachments?.render(el, f.attachments);
      }
      const state = reply(f.message_id);
      if (!state.el) state.el = messageEl(f.message_id, "assistant", f.user_message_id || f.parent_id);
      state.el.dataset.status = "streaming";
      state.el.classList.add("status-streaming");
      state.el.dataset.parentId = f.user_message_id || f.parent_id || "";
      if (f.model) state.el.querySelector(".role").textContent = f.model;
      state.el.querySelector(".usage").textContent = "streaming…";
      setStreaming(f.message_id);
      keepScrolled(true);
    },
    "chat.delta"(f) {
      const state = reply(f.message_id);
      if (f.seq <= state.seq) return;
      state.seq = f.seq;
      state.content += f.content || "";
      state.reasoning += f.reasoning || "";
      if (!state.el) return;
      state.el.dataset.status = "streaming";
      setStreaming(f.message_id);
      scheduleRender(f.message_id);
    },
    "chat.snapshot"(f) {
      const state = reply(f.message_id);
      state.seq = f.seq;
      state.content = f.content || "";
      state.reasoning = f.reasoning || "";
      if (!state.el) return;
      state.el.dataset.status = f.status;
      if (f.status === "streaming") setStreaming(f.message_id);
      scheduleRender(f.message_id);
    },
    "chat.done"(f) {
      const state = reply(f.message_id);
      if (state.frame) cancelAnimationFrame(state.frame);
      state.frame = 0;
      if (streamingId === f.message_id) setStreaming(null);
      ui.announce(f.finish_reason === "stopped" ? "Reply stopped." : "Reply finished.");
      if (!state.el) return;
      state.el.dataset.status = f.status || "complete";
      state.el.className = `message assistant status-${state.el.dataset.status}`;
      showContent(state);
      const usage = state.el.querySelector(".usage");
      usage.textContent = usageText(f.usage);
      if (f.usage && f.usage.estimated) {
        const mark = document.createElement("span");
        mark.className = "estimated";
        mark.title = "The provider reported no usage; counted by chatweb";
        mark.textContent = " · estimated";
        usage.append(mark);
      }
      const parentId = Number(state.el.dataset.parentId) || null;
      replies.delete(f.message_id);
      // the stored rendering replaces the live one (same policy), with its versions navigator
      refreshMessages([parentId, f.message_id])
        .catch(() => {})
        .finally(() => document.dispatchEvent(new CustomEvent("chatweb:done", { detail: f })));
    },
    "chat.estimate"(f) {
      showEstimate(f);
    },
    "chat.error"(f) {
      if (String(f.request_id || "").startsWith("est-")) return; // an estimate that failed: the send will say why
      if (edits.has(f.request_id)) {
        cancelEdit(document.getElementById(`message-${edits.get(f.request_id)}`));
        edits.delete(f.request_id);
      }
      if (draft && f.request_id === draft.requestId) {
        const refused = draft;
        draftReleased();
        if (f.code === "reply_in_progress") { // another tab's reply: wait for it like for our own
          queueDraft();
          if (!streamingId) setTimeout(sendQueued, 1000);
          return;
        }
        f = { ...f, draftRequestId: refused.requestId };
      }
      showError(f);
      if (f.message_id && streamingId === f.message_id) setStreaming(null);
      ui.announce(`Error: ${f.message}`);
      document.dispatchEvent(new CustomEvent("chatweb:error", { detail: f }));
    },
    "chat.title"(f) {
      panel()?.titleChanged(f.conversation_id, f.title);
      document.dispatchEvent(new CustomEvent("chatweb:title", { detail: f }));
    },
    "chat.sidebar"() {
      // a folder or pin changed in some tab of this user's: static/js/folders.js fetches the list again
      document.dispatchEvent(new CustomEvent("chatweb:sidebar"));
    },
    "chat.deleted"(f) {
      // deleted here or in another tab: its address must not stay in the bar (a reload would be a 404)
      panel()?.conversationDeleted(f.conversation_id);
      if (f.conversation_id === conversationId && !chat.dataset.leaving) {
        chat.dataset.leaving = "yes"; // one navigation, whether this frame or the Delete button's answer comes first
        history.replaceState(null, "", "/");
        location.replace("/");
      }
    },
  };

  let idleClosed = false; // the server closed a quiet socket (4408): reconnect when the person acts again
  const held = []; // frames sent while reconnecting after an idle close

  function send(frame) {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      if (idleClosed || socket?.readyState === WebSocket.CONNECTING) {
        held.push(frame);
        if (idleClosed) { idleClosed = false; connect(); }
        return true;
      }
      showError({ message: "Not connected; reconnecting. Try again in a moment." });
      return false;
    }
    socket.send(JSON.stringify(frame));
    return true;
  }

  // --- the composer's cost estimate (chat.estimate), asked for a moment after typing stops ---
  const estimateEl = document.getElementById("composer-estimate");
  let estimateTimer = 0;
  let estimateCounter = 0;
  function scheduleEstimate() {
    clearTimeout(estimateTimer);
    estimateTimer = setTimeout(() => {
      if (!estimateEl || !modelSelect.value || !socket || socket.readyState !== WebSocket.OPEN) return;
      const settings = panel() ? panel().collect() : { system: null, params: {} };
      estimateCounter += 1;
      socket.send(JSON.stringify({
        type: "chat.estimate", request_id: `est-${estimateCounter}`, conversation_id: conversationId,
        model: modelSelect.value, content: input.value, system: settings.system || null, params: settings.params || {},
        attachments: window.chatwebAttachments?.ids() || [],
      }));
    }, 400);
  }
  function showEstimate(f) {
    if (!estimateEl || f.request_id !== `est-${estimateCounter}`) return; // an answer to an older draft
    const cost = f.priced === false ? "price unknown" : `≤ $${f.max_cost}`;
    estimateEl.textContent = `~${f.prompt_tokens} tokens · ${cost}`;
    estimateEl.hidden = false;
  }

  function nextRequestId() {
    requestCounter += 1;
    return `r${Date.now().toString(36)}${requestCounter}`;
  }

  function sendMessage(content, parentId = null, attachments = []) {
    const settings = panel() ? panel().collect() : { system: "", params: {} };
    if (!settings) return false;
    const requestId = nextRequestId();
    const frame = {
      type: "chat.send", request_id: requestId, conversation_id: conversationId, model: modelSelect.value,
      content, system: settings.system, params: settings.params,
    };
    if (parentId) frame.parent_id = parentId;
    if (attachments.length) frame.attachments = attachments;
    if (!conversationId && window.chatwebTemporary?.wanted()) frame.temporary = true;
    pending.set(requestId, content);
    return send(frame) ? requestId : null;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/chat/`);
    statusEl.textContent = "Connecting…";
    socket.addEventListener("open", () => {
      retryDelay = 500;
      statusEl.textContent = "Connected";
      if (conversationId) send({ type: "chat.subscribe", conversation_id: conversationId });
      while (held.length) socket.send(JSON.stringify(held.shift()));
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      handlers[frame.type]?.(frame);
    });
    socket.addEventListener("close", (event) => {
      if (draft) {
        draftReleased();
        notice("The connection dropped before the message was confirmed; it is still here to send again.", "error");
      }
      if (event.code === 4401) { // signed out (or the session expired): sign in again, then come back
        location.assign(`/accounts/login/?next=${encodeURIComponent(location.pathname)}`);
        return;
      }
      if (event.code === 4408) { // closed for being idle: no reconnect loop, the next action reconnects
        idleClosed = true;
        statusEl.textContent = "Idle; reconnects when you continue";
        return;
      }
      statusEl.textContent = "Disconnected; reconnecting…";
      const delay = retryDelay * (0.75 + Math.random() * 0.5);
      retryDelay = Math.min(retryDelay * 2, 8000);
      setTimeout(connect, delay);
    });
  }

  // --- message actions ------------------------------------------------------------------------------------
  function sourceOf(el) {
    const id = Number(el.dataset.messageId);
    if (replies.has(id)) return replies.get(id).content;
    const template = el.querySelector("template.source");
    if (template) return template.content.textContent;
    return el.querySelector(".content").textContent;
  }

  function startEdit(el) {
    if (el.querySelector(".edit-box")) return;
    const content = el.querySelector(".content");
    const box = document.createElement("div");
    box.className = "edit-box";
    const area = document.createElement("textarea");
    area.className = "edit-input";
    area.rows = Math.min(20, Math.max(5, content.textContent.split("\n").length + 1));
    el.classList.add("editing"); // the editor takes the conversation's full width
    area.value = content.textContent;
    area.setAttribute("aria-label", "Edit your message");
    const bar = document.createElement("div");
    bar.className = "edit-actions";
    const cancel = button("cancel-edit", "Cancel", "secondary");
    const save = document.createElement("button");
    save.type = "button";
    save.dataset.action = "send-edit";
    save.textContent = "Send";
    bar.append(cancel, save);
    box.append(area, bar);
    content.hidden = true;
    content.after(box);
    area.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        save.click();
      } else if (event.key === "Escape") {
        event.stopPropagation();
        cancelEdit(el);
      }
    });
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
  }

  function cancelEdit(el) {
    if (!el) return;
    el.querySelector(".edit-box")?.remove();
    el.classList.remove("editing");
    const content = el.querySelector(".content");
    if (content) content.hidden = false;
  }

  function sendEdit(el) {
    const text = el.querySelector(".edit-input").value;
    if (!text.trim()) return;
    const requestId = nextRequestId();
    if (send({ type: "chat.edit", message_id: Number(el.dataset.messageId), content: text, request_id: requestId })) {
      edits.set(requestId, Number(el.dataset.messageId));
      el.querySelector(".edit-input").disabled = true;
    }
  }

  async function switchVersion(target) {
    if (!conversationId || !target) return;
    try {
      await ui.post(`/c/${conversationId}/branch/`, { message_id: target });
      await refreshMessages(null);
      for (const [id, state] of replies) {
        reply(id);
        if (state.el) showContent(state);
      }
      document.querySelector(`#message-${target} [data-action=version]:not([disabled])`)?.focus();
      ui.announce("Showing another version.");
    } catch (error) {
      showError({ message: error.message });
    }
  }

  async function deleteMessage(el) {
    const below = [];
    for (let next = el.nextElementSibling; next; next = next.nextElementSibling) if (next.matches("article.message")) below.push(next);
    const what = el.dataset.role === "user" ? "this message" : "this reply";
    const text = below.length
      ? `Delete ${what} and the ${below.length} message${below.length > 1 ? "s" : ""} after it (with their other versions)?`
      : `Delete ${what}${el.querySelector(".versions") ? " (this version)" : ""}?`;
    if (!(await ui.confirm(text))) return;
    try {
      await ui.post(`/c/${conversationId}/m/${el.dataset.messageId}/delete/`);
      await refreshMessages(null);
      if (!messagesEl.querySelector("article.message")) {
        const hint = document.createElement("p");
        hint.className = "empty muted";
        hint.id = "empty-hint";
        hint.textContent = "No messages left in this conversation.";
        messagesEl.append(hint);
      }
      ui.announce("Deleted.");
    } catch (error) {
      showError({ message: error.message });
    }
  }

  messagesEl.addEventListener("click", (event) => {
    const target = event.target.closest("button[data-action]");
    const el = target?.closest("article.message");
    if (!target || !el) return;
    const id = Number(el.dataset.messageId);
    switch (target.dataset.action) {
      case "copy":
        render.copyText(sourceOf(el), target);
        break;
      case "edit":
        startEdit(el);
        break;
      case "cancel-edit":
        cancelEdit(el);
        break;
      case "send-edit":
        sendEdit(el);
        break;
      case "continue": // a follow-up after this reply: its text stays, the model goes on from it
        sendMessage(CONTINUE_PROMPT, id);
        break;
      case "regenerate":
        send({ type: "chat.regenerate", message_id: id, request_id: nextRequestId() });
        break;
      case "version":
        switchVersion(Number(target.dataset.target));
        break;
      case "delete":
        deleteMessage(el);
        break;
      default:
    }
  });

  // --- composer ------------------------------------------------------------------------------------------
  function codePoints(text) {
    // the server counts code points (a surrogate pair is one character); below 90 % in UTF-16 units it cannot matter
    if (text.length < maxChars * 0.9) return text.length;
    let count = text.length;
    for (let i = 0; i < text.length; i += 1) {
      const unit = text.charCodeAt(i);
      if (unit >= 0xd800 && unit <= 0xdbff) count -= 1;
    }
    return count;
  }
  const number = (n) => n.toLocaleString("en-US");

  function updateCounter() {
    const count = codePoints(input.value);
    const near = count >= maxChars * 0.9;
    counterEl.hidden = !near;
    if (near) counterEl.textContent = `${number(count)} / ${number(maxChars)}`;
    counterEl.classList.toggle("over", count > maxChars);
    return count;
  }

  /** A line above the composer: why a send did not go, or that it waits (with a Cancel). */
  function notice(text, kind = "info", action = null) {
    noticeEl.replaceChildren();
    noticeEl.hidden = !text;
    noticeEl.className = `composer-notice ${kind}`;
    if (!text) return;
    const span = document.createElement("span");
    span.textContent = text;
    noticeEl.append(span);
    if (action) noticeEl.append(" ", action);
    if (kind === "error") ui.announce(text);
  }

  function lockComposer(locked) {
    input.readOnly = locked;
    form.classList.toggle("waiting", locked);
  }

  function draftAccepted() {
    if (input.value === draft.content) input.value = "";
    window.chatwebAttachments?.clear();
    draft = null;
    lockComposer(false);
    notice("");
    updateCounter();
  }

  function draftReleased() {
    draft = null;
    lockComposer(false);
  }

  function queueDraft() {
    queued = true;
    lockComposer(true);
    const cancel = button("cancel-queued", "Cancel", "secondary");
    cancel.addEventListener("click", () => {
      queued = false;
      lockComposer(false);
      notice("");
      input.focus();
    });
    notice("Queued: sends when the reply being written ends.", "info", cancel);
    ui.announce("Queued until the reply ends.");
  }

  function sendQueued() {
    if (!queued || streamingId || draft) return;
    queued = false;
    sendDraft();
  }

  function sendDraft() {
    const content = input.value;
    const requestId = sendMessage(content, null, window.chatwebAttachments?.ids() || []);
    if (!requestId) {
      lockComposer(false);
      notice("");
      return;
    }
    draft = { requestId, content };
    lockComposer(true);
    notice("");
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (draft || queued) return; // on its way already
    const content = input.value;
    const files = window.chatwebAttachments;
    if (files?.uploading()) {
      notice("Wait for the files to finish uploading.", "error");
      return;
    }
    if (files?.failed()) {
      notice("Remove the files that could not be uploaded first.", "error");
      return;
    }
    if (!content.trim() && !files?.ids().length) {
      notice("Type a message first.", "error");
      input.focus();
      return;
    }
    const count = updateCounter();
    if (count > maxChars) {
      notice(`A message may hold at most ${number(maxChars)} characters; this one has ${number(count)}. `
        + "Shorten it or send it in parts.", "error");
      return;
    }
    if (!modelSelect.value) {
      showError({ message: "No model is enabled: ask an administrator to add one." });
      return;
    }
    if (streamingId) { // the next prompt must hold the reply being written: wait for it
      queueDraft();
      return;
    }
    sendDraft();
  });
  form.addEventListener("chatweb:attachments", scheduleEstimate); // a file uploaded or removed: the estimate counts it
  input.addEventListener("input", () => {
    scheduleEstimate();
    updateCounter();
    if (noticeEl.classList.contains("error")) notice("");
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
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape" || event.shiftKey || event.defaultPrevented) return; // Shift+Esc: the message box
    if (document.querySelector("dialog[open]")) return; // Esc closes the dialog
    stop();
  });

  for (const el of messagesEl.querySelectorAll(".message.assistant[data-status='streaming']")) {
    setStreaming(Number(el.dataset.messageId));
  }
  window.chatweb = {
    send, sendMessage, showError, get conversationId() { return conversationId; }, get streamingId() { return streamingId; },
  };
  messagesEl.scrollTop = messagesEl.scrollHeight;
  for (const wake of ["focus", "visibilitychange"]) {
    window.addEventListener(wake, () => {
      if (idleClosed && document.visibilityState === "visible") { idleClosed = false; connect(); }
    });
  }
  connect();
})();
