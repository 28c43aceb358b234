// Everything around the messages: the conversation list (search, mobile toggle, fetching it again), the title bar
// (rename, export, delete) and the settings panel (system prompt, every sampling parameter with its range, presets).
(() => {
  "use strict";
  const chat = document.getElementById("chat");
  if (!chat) return;
  const ui = window.chatwebUI;
  const sidebar = document.getElementById("sidebar");
  const sidebarToggle = document.getElementById("sidebar-toggle");
  const list = document.getElementById("conversation-list");
  const search = document.getElementById("conversation-search");
  const titleEl = document.getElementById("conversation-title");
  const actions = document.getElementById("conversation-actions");
  const modelSelect = document.getElementById("model-select");
  const panel = document.getElementById("params-panel");
  const panelToggle = document.getElementById("params-toggle");
  const template = document.getElementById("params-template");
  const summary = document.getElementById("active-settings");
  const readJson = (id, fallback) => {
    const el = document.getElementById(id);
    try { return el ? JSON.parse(el.textContent) : fallback; } catch { return fallback; }
  };

  const conversationId = () => (chat.dataset.conversationId ? Number(chat.dataset.conversationId) : null);

  // --- settings: the system prompt and the parameters, kept here whether or not the panel is open ------------------
  const specs = [...template.content.querySelectorAll("[data-param]")].map((input) => ({
    name: input.dataset.param,
    type: input.dataset.type,
    min: input.dataset.min === "" ? null : Number(input.dataset.min),
    max: input.dataset.max === "" ? null : Number(input.dataset.max),
    minInclusive: input.dataset.minInclusive !== "0",
    maxInclusive: input.dataset.maxInclusive !== "0",
    range: input.dataset.range,
  }));
  const settings = { system: readJson("conversation-system", "") || "", raw: {} };
  let presets = readJson("presets-data", []);

  function rawOf(value) {
    if (value === null || value === undefined) return "";
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }
  function loadParams(params) {
    settings.raw = {};
    for (const [name, value] of Object.entries(params || {})) settings.raw[name] = rawOf(value);
  }
  loadParams(readJson("conversation-params", {}));

  function inRange(spec, value) {
    if (spec.min !== null && (value < spec.min || (value === spec.min && !spec.minInclusive))) return false;
    return spec.max === null || !(value > spec.max || (value === spec.max && !spec.maxInclusive));
  }

  /** A parameter's typed value from what was typed, or an error sentence (the server checks again). */
  function check(spec, raw) {
    const text = raw.trim();
    if (!text) return {};
    const must = (what) => ({ error: `${spec.name} must be ${what}${spec.range ? ` ${spec.range}` : ""}.` });
    if (spec.type === "number" || spec.type === "integer") {
      const value = Number(text);
      if (!Number.isFinite(value)) return must(spec.type === "integer" ? "a whole number" : "a number");
      if (spec.type === "integer" && !Number.isInteger(value)) return must("a whole number");
      if (!inRange(spec, value)) return must(spec.type === "integer" ? "a whole number" : "a number");
      return { value };
    }
    if (spec.type === "stop") {
      if (!text.startsWith("[")) return { value: raw };
      let value;
      try { value = JSON.parse(text); } catch { return { error: "stop: a string, or a JSON list of up to 4 strings." }; }
      if (!Array.isArray(value) || value.length > 4 || !value.every((s) => typeof s === "string" && s)) {
        return { error: "stop: a string, or a JSON list of up to 4 non-empty strings." };
      }
      return { value };
    }
    if (spec.type === "logit_bias") {
      let value;
      try { value = JSON.parse(text); } catch { value = null; }
      const wanted = `logit_bias: a JSON object of token ids to numbers ${spec.range}, e.g. {"50256": -100}.`;
      if (!value || typeof value !== "object" || Array.isArray(value)) return { error: wanted };
      for (const [token, bias] of Object.entries(value)) {
        if (!/^\d+$/.test(token) || typeof bias !== "number" || !inRange(spec, bias)) return { error: wanted };
      }
      return { value };
    }
    return { value: raw };
  }

  function showFieldError(name, error) {
    const input = panel.querySelector(`#param-${name}`);
    const message = panel.querySelector(`#error-${name}`);
    if (!input || !message) return;
    input.setAttribute("aria-invalid", error ? "true" : "false");
    message.textContent = error || "";
    message.hidden = !error;
  }

  /** {system, params} to send, or null after showing what is wrong (the panel opens at the first problem). */
  function collect() {
    const params = {};
    let first = null;
    for (const spec of specs) {
      const result = check(spec, settings.raw[spec.name] || "");
      if (result.error) {
        first = first || spec.name;
        if (!panel.hidden) showFieldError(spec.name, result.error);
      } else if (result.value !== undefined) {
        params[spec.name] = result.value;
      }
    }
    if (first) {
      openPanel();
      for (const spec of specs) showFieldError(spec.name, check(spec, settings.raw[spec.name] || "").error);
      panel.querySelector(`#param-${first}`)?.focus();
      ui.announce("A parameter is not valid; see the parameters panel.");
      return null;
    }
    return { system: settings.system, params };
  }

  function updateSummary() {
    const parts = specs.filter((s) => (settings.raw[s.name] || "").trim()).map((s) => `${s.name} ${settings.raw[s.name].trim()}`);
    if (settings.system.trim()) parts.unshift("system prompt");
    summary.textContent = parts.length ? parts.join(" · ") : "";
    summary.title = summary.textContent;
  }

  // --- the panel ------------------------------------------------------------------------------------------------
  function renderPresets() {
    const ul = panel.querySelector("#preset-list");
    if (!ul) return;
    ul.replaceChildren();
    if (!presets.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "No presets yet: set a system prompt or parameters, name them, save.";
      ul.append(li);
    }
    for (const preset of presets) {
      const li = document.createElement("li");
      const use = document.createElement("button");
      use.type = "button";
      use.className = "chip";
      use.dataset.presetId = preset.id;
      use.textContent = preset.name;
      use.title = [preset.model, preset.system_prompt].filter(Boolean).join(" · ");
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "icon-button danger";
      remove.dataset.deletePreset = preset.id;
      remove.setAttribute("aria-label", `Delete preset ${preset.name}`);
      remove.textContent = "✕";
      li.append(use, remove);
      ul.append(li);
    }
  }

  function fillPanel() {
    panel.querySelector("#system-prompt").value = settings.system;
    for (const spec of specs) {
      panel.querySelector(`#param-${spec.name}`).value = settings.raw[spec.name] || "";
      showFieldError(spec.name, null);
    }
    renderPresets();
  }

  function openPanel() {
    if (!panel.hidden) return;
    panel.replaceChildren(template.content.cloneNode(true));
    panel.setAttribute("role", "region");
    panel.setAttribute("aria-labelledby", "params-heading");
    fillPanel();
    panel.hidden = false;
    panelToggle.setAttribute("aria-expanded", "true");
  }

  function closePanel() {
    if (panel.hidden) return;
    panel.hidden = true;
    panel.replaceChildren(); // its fields live in `settings` until it opens again
    panelToggle.setAttribute("aria-expanded", "false");
    panelToggle.focus();
  }

  panelToggle.addEventListener("click", () => {
    if (panel.hidden) {
      openPanel();
      panel.querySelector("#system-prompt").focus();
    } else closePanel();
  });
  panel.addEventListener("input", (event) => {
    const field = event.target;
    if (field.id === "system-prompt") settings.system = field.value;
    else if (field.dataset.param) {
      settings.raw[field.dataset.param] = field.value;
      const spec = specs.find((s) => s.name === field.dataset.param);
      showFieldError(spec.name, check(spec, field.value).error);
    }
    updateSummary();
  });
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.stopPropagation();
      closePanel();
    }
  });
  panel.addEventListener("click", async (event) => {
    const target = event.target.closest("button");
    if (!target) return;
    if (target.dataset.action === "close-params") closePanel();
    else if (target.dataset.action === "reset-params") {
      settings.raw = {};
      fillPanel();
      updateSummary();
    } else if (target.dataset.action === "save-preset") savePreset();
    else if (target.dataset.presetId) applyPreset(Number(target.dataset.presetId));
    else if (target.dataset.deletePreset) deletePreset(Number(target.dataset.deletePreset));
  });

  // --- presets ------------------------------------------------------------------------------------------------------
  function applyPreset(id) {
    const preset = presets.find((p) => p.id === id);
    if (!preset) return;
    if (preset.model && [...modelSelect.options].some((o) => o.value === preset.model)) modelSelect.value = preset.model;
    settings.system = preset.system_prompt || "";
    loadParams(preset.params);
    if (!panel.hidden) fillPanel();
    updateSummary();
    ui.announce(`Preset ${preset.name} applied.`);
    document.getElementById("composer-input")?.focus();
  }

  async function savePreset() {
    const nameInput = panel.querySelector("#preset-name");
    const errorEl = panel.querySelector("#preset-error");
    errorEl.hidden = true;
    const current = collect();
    if (!current) return;
    try {
      const preset = await ui.post("/presets/", {
        name: nameInput.value, model: modelSelect.value, system_prompt: current.system,
        params: JSON.stringify(current.params),
      });
      presets = [...presets.filter((p) => p.id !== preset.id), preset].sort((a, b) => a.name.localeCompare(b.name));
      nameInput.value = "";
      renderPresets();
      ui.announce(`Preset ${preset.name} saved.`);
    } catch (error) {
      errorEl.textContent = error.message;
      errorEl.hidden = false;
    }
  }

  async function deletePreset(id) {
    const preset = presets.find((p) => p.id === id);
    if (!preset || !(await ui.confirm(`Delete the preset “${preset.name}”?`))) return;
    try {
      await ui.post(`/presets/${id}/delete/`);
      presets = presets.filter((p) => p.id !== id);
      renderPresets();
      ui.announce(`Preset ${preset.name} deleted.`);
    } catch (error) {
      ui.announce(error.message);
    }
  }

  document.getElementById("messages").addEventListener("click", (event) => {
    const chip = event.target.closest(".preset-chips [data-preset-id]");
    if (chip) applyPreset(Number(chip.dataset.presetId));
  });

  // --- the conversation list ------------------------------------------------------------------------------------
  sidebarToggle.addEventListener("click", () => {
    const open = !document.body.classList.contains("sidebar-open");
    document.body.classList.toggle("sidebar-open", open);
    sidebarToggle.setAttribute("aria-expanded", String(open));
    if (open) search.focus();
  });
  document.addEventListener("click", (event) => {
    // a tap beside the open drawer (on the dimmed page) closes it
    if (!document.body.classList.contains("sidebar-open")) return;
    if (sidebar.contains(event.target) || sidebarToggle.contains(event.target)) return;
    event.preventDefault();
    sidebarToggle.click();
  });
  sidebar.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.classList.contains("sidebar-open")) {
      event.stopPropagation();
      sidebarToggle.click();
      sidebarToggle.focus();
    }
  });

  let searchTimer = 0;
  let searchSerial = 0;
  async function runSearch() {
    const serial = ++searchSerial;
    const params = new URLSearchParams({ q: search.value, current: conversationId() || "" });
    list.setAttribute("aria-busy", "true");
    try {
      const items = await ui.fragment(`/search/?${params}`);
      if (serial !== searchSerial) return;
      // the list is new markup with the same ids: keep the keyboard where it was (e.g. on a conversation's ⋯)
      const focused = list.contains(document.activeElement) ? document.activeElement.id : "";
      // a search's results are read out as they come; the whole list fetched again after a change is not (the
      // change itself is announced)
      list.setAttribute("aria-live", params.get("q").trim() ? "polite" : "off");
      list.replaceChildren(items);
      if (focused) document.getElementById(focused)?.focus();
      list.dispatchEvent(new CustomEvent("chatweb:listed"));
    } catch {
      // keep the list as it was
    } finally {
      if (serial === searchSerial) list.setAttribute("aria-busy", "false");
    }
  }
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, 200);
  });
  search.form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(searchTimer);
    runSearch();
  });

  /** Where a conversation started in this tab goes: the top of Today (made if missing), or of a search's results. */
  function todayItems() {
    const recent = list.querySelector(".recent-groups");
    if (!recent) return list.querySelector("ul.conversation-items") || list;
    let ul = recent.querySelector('[data-group="today"] ul');
    if (!ul) {
      const section = document.createElement("section");
      section.className = "conversation-group";
      section.dataset.group = "today";
      section.setAttribute("aria-labelledby", "group-today");
      const heading = document.createElement("h2");
      heading.className = "group-heading";
      heading.id = "group-today";
      heading.textContent = "Today";
      ul = document.createElement("ul");
      ul.className = "conversation-items";
      section.append(heading, ul);
      const first = recent.querySelector(".conversation-group");
      if (first) first.before(section);
      else recent.append(section);
    }
    return ul;
  }

  /** The markup of partials/conversation_item.html, for a conversation started in this tab. */
  function listItem(id, title) {
    for (const empty of list.querySelectorAll(".empty-list")) empty.closest("ul")?.remove();
    for (const li of list.querySelectorAll("li.current")) {
      li.classList.remove("current");
      li.querySelector("a")?.removeAttribute("aria-current");
    }
    const li = document.createElement("li");
    li.className = "conversation-item current";
    const a = document.createElement("a");
    a.href = `/c/${id}/`;
    a.dataset.conversationId = id;
    a.draggable = true;
    a.setAttribute("aria-current", "page");
    const span = document.createElement("span");
    span.className = "conversation-title";
    span.id = `c${id}-title`;
    span.textContent = title;
    a.append(span);
    const menu = document.createElement("button");
    menu.type = "button";
    menu.className = "icon-button conversation-menu-button";
    menu.id = `c${id}-actions`;
    menu.setAttribute("aria-labelledby", `${menu.id} ${span.id}`);
    menu.setAttribute("aria-haspopup", "menu");
    menu.setAttribute("aria-expanded", "false");
    const label = document.createElement("span");
    label.className = "sr-only";
    label.textContent = "Actions for";
    const dots = document.createElement("span");
    dots.setAttribute("aria-hidden", "true");
    dots.textContent = "⋯";
    menu.append(label, dots);
    li.append(a, menu);
    todayItems().prepend(li);
  }

  // --- the title bar ------------------------------------------------------------------------------------------------
  function setTitle(title) {
    titleEl.textContent = title;
    document.title = `${title} · chatweb`;
    const id = conversationId();
    for (const span of list.querySelectorAll(`a[data-conversation-id="${id}"] .conversation-title`)) span.textContent = title;
  }

  function conversationStarted(id, title, listed = true) {
    actions.hidden = false;
    document.getElementById("export-md").href = `/c/${id}/export.md`;
    document.getElementById("export-json").href = `/c/${id}/export.json`;
    search.form.action = `/c/${id}/`;
    if (listed) listItem(id, title); // a temporary chat is listed nowhere
    setTitle(title);
  }

  function titleChanged(id, title) {
    if (id === conversationId()) setTitle(title);
    else for (const span of list.querySelectorAll(`a[data-conversation-id="${id}"] .conversation-title`)) span.textContent = title;
  }

  function conversationDeleted(id) {
    for (const a of list.querySelectorAll(`a[data-conversation-id="${id}"]`)) a.closest("li")?.remove();
    // its folder's count, an emptied folder's hint and the day groups come from the server: fetch the list again
    document.dispatchEvent(new CustomEvent("chatweb:sidebar"));
  }

  document.getElementById("rename-button").addEventListener("click", () => {
    const id = conversationId();
    if (!id || titleEl.querySelector("input")) return;
    const before = titleEl.textContent;
    ui.inlineEdit({
      value: before,
      label: "Conversation title",
      maxLength: 200,
      place: (input) => titleEl.replaceChildren(input),
      async done(save, title) {
        if (!save || !title || title === before) {
          titleEl.textContent = before;
          return;
        }
        titleEl.textContent = title;
        try {
          const answer = await ui.post(`/c/${id}/rename/`, { title });
          setTitle(answer.title);
          ui.announce("Conversation renamed.");
        } catch (error) {
          titleEl.textContent = before;
          ui.announce(error.message);
        }
      },
    });
  });

  document.getElementById("delete-conversation-button").addEventListener("click", async () => {
    const id = conversationId();
    if (!id || !(await ui.confirm(`Delete “${titleEl.textContent}” and all its messages? This cannot be undone.`))) return;
    try {
      const answer = await ui.post(`/c/${id}/delete/`);
      if (chat.dataset.leaving) return; // this tab's chat.deleted came first and is on its way to `/`
      chat.dataset.leaving = "yes";
      history.replaceState(null, "", "/"); // the old address is gone at once, whatever happens to the navigation
      location.replace(answer.location || "/");
    } catch (error) {
      ui.announce(error.message);
      window.chatweb?.showError({ message: error.message });
    }
  });

  updateSummary();
  window.chatwebPanel = {
    collect, applyPreset, conversationStarted, titleChanged, conversationDeleted, openPanel, closePanel,
    refreshList: runSearch,
  };
})();
