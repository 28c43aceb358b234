// Small helpers the chat page's scripts share: CSRF-protected POSTs, fetching server-rendered fragments,
// a confirmation dialog, an inline text field, screen-reader announcements.
(() => {
  "use strict";

  function csrfToken() {
    const field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  /** POST a form to one of the page's endpoints; resolves to its JSON answer, rejects with its error text. */
  async function post(url, fields = {}) {
    const body = new URLSearchParams();
    for (const [name, value] of Object.entries(fields)) body.append(name, value);
    const response = await fetch(url, {
      method: "POST",
      body,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    });
    let data = {};
    try { data = await response.json(); } catch { data = {}; }
    if (!response.ok) throw new Error(data.error || `The server answered ${response.status}.`);
    return data;
  }

  /** Server-rendered HTML (our own templates, already sanitised) as a DocumentFragment. */
  async function fragment(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok) throw new Error(`The server answered ${response.status}.`);
    const template = document.createElement("template");
    template.innerHTML = await response.text();
    return template.content;
  }

  /** A modal question with Cancel / a named action; resolves true when confirmed. */
  function confirmAction(text, actionLabel = "Delete") {
    const dialog = document.getElementById("confirm-dialog");
    if (!dialog || typeof dialog.showModal !== "function") return Promise.resolve(false);
    dialog.querySelector("#confirm-text").textContent = text;
    dialog.querySelector("#confirm-ok").textContent = actionLabel;
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    });
  }

  /** A one-line text field in place of some text: Enter or leaving it saves, Escape cancels. `place(input)` puts
   *  the field on the page; `done(save, value)` runs once, with the trimmed value, after the field is removed. */
  function inlineEdit({ value, label, maxLength, className = "rename-input", place, done }) {
    const input = document.createElement("input");
    input.type = "text";
    input.className = className;
    input.maxLength = maxLength;
    input.value = value;
    input.setAttribute("aria-label", label);
    place(input);
    input.focus();
    input.select();
    let ended = false;
    const end = (save) => {
      if (ended) return; // removing the field blurs it: one end only
      ended = true;
      const text = input.value.trim();
      input.remove();
      done(save, text);
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        end(true);
      } else if (event.key === "Escape") {
        event.stopPropagation();
        end(false);
      }
    });
    input.addEventListener("blur", () => end(true));
  }

  function announce(text) {
    const el = document.getElementById("announcer");
    if (!el) return;
    el.textContent = "";
    // a fresh text node after a tick, so repeating the same sentence is announced again
    setTimeout(() => { el.textContent = text; }, 50);
  }

  window.chatwebUI = { post, fragment, confirm: confirmAction, inlineEdit, announce, csrfToken };
})();
