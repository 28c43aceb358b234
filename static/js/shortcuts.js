// The chat page's keyboard shortcuts, listed in the dialog that `?` (or the sidebar's Shortcuts button) opens
// (templates/chat.html #shortcuts-dialog): new chat, search, copy the last reply, focus the message box.
// Esc stops a reply being written (static/js/chat.js). Ctrl is ⌘ on a Mac.
(() => {
  "use strict";
  const dialog = document.getElementById("shortcuts-dialog");
  if (!dialog || typeof dialog.showModal !== "function") return;
  const ui = window.chatwebUI;
  const mac = /Mac|iPhone|iPad/.test(navigator.userAgentData?.platform || navigator.platform || "");
  if (mac) for (const kbd of dialog.querySelectorAll("kbd[data-mod]")) kbd.textContent = "⌘";

  const typing = (el) => Boolean(el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName)));

  function showList() {
    if (!dialog.open) dialog.showModal();
  }
  document.getElementById("shortcuts-button")?.addEventListener("click", showList);

  function focusSearch() {
    const search = document.getElementById("conversation-search");
    const sidebar = document.getElementById("sidebar");
    // the narrow layout's drawer opens first (its toggle focuses the search box too)
    if (getComputedStyle(sidebar).visibility === "hidden") document.getElementById("sidebar-toggle")?.click();
    search.focus();
    search.select();
  }

  function copyLastReply() {
    const reply = [...document.querySelectorAll("#messages article.message.assistant")].pop();
    const copy = reply?.querySelector("[data-action=copy]");
    if (copy) {
      copy.click(); // the reply's own Copy: its Markdown, and "Copied" where the person can see it
      ui?.announce("Last reply copied.");
    } else ui?.announce("There is no reply to copy yet.");
  }

  function focusComposer() {
    if (document.body.classList.contains("sidebar-open")) document.getElementById("sidebar-toggle")?.click();
    document.getElementById("composer-input")?.focus();
  }

  /** Text the person selected (in the page or a field): Ctrl+Shift+C then copies that, as the browser would. */
  function selectedText(target) {
    if (typing(target) && typeof target.selectionStart === "number") return target.selectionStart !== target.selectionEnd;
    return Boolean(window.getSelection()?.toString());
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing || event.altKey) return;
    if (document.querySelector("dialog[open]")) return; // a dialog has the keyboard (Esc closes it)
    const mod = mac ? event.metaKey && !event.ctrlKey : event.ctrlKey && !event.metaKey;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    let run = null;
    if (mod && event.shiftKey && key === "o") run = () => { window.location.assign("/"); };
    else if (mod && !event.shiftKey && key === "k") run = focusSearch;
    else if (mod && event.shiftKey && key === "c" && !selectedText(event.target)) run = copyLastReply;
    else if (!mod && !event.ctrlKey && !event.metaKey) {
      if (key === "Escape" && event.shiftKey) run = focusComposer;
      else if (!typing(event.target) && key === "?") run = showList;
      else if (!typing(event.target) && key === "/" && !event.shiftKey) run = focusComposer;
    }
    if (!run) return;
    event.preventDefault();
    run();
  });
})();
