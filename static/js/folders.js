// The sidebar's folders and pins: a new folder, renaming and deleting one, collapsing one (remembered in this
// browser), each conversation's ⋯ menu (pin, move to a folder, take out of its folder) and dragging a conversation
// onto a folder (or out of one). Each change goes to the server (conversations/chat/folder_views.py), then the list
// is fetched again, here and, through the `chat.sidebar` frame, in the user's other tabs.
(() => {
  "use strict";
  const list = document.getElementById("conversation-list");
  const ui = window.chatwebUI;
  if (!list || !ui) return;
  const menu = document.getElementById("conversation-menu");
  const newButton = document.getElementById("new-folder-button");
  const newForm = document.getElementById("new-folder-form");
  const newName = document.getElementById("new-folder-name");
  const errorEl = document.getElementById("folder-error");
  const COLLAPSED_KEY = "chatweb.collapsedFolders";
  const DRAG_TYPE = "application/x-chatweb-conversation";

  let editing = false; // a folder's name is being edited: a list fetched now would take the field away
  let staleList = false; // another tab changed the sidebar meanwhile

  function refresh() {
    staleList = false;
    return window.chatwebPanel?.refreshList() ?? Promise.resolve();
  }

  function showError(message) {
    errorEl.textContent = message || "";
    errorEl.hidden = !message;
    if (message) ui.announce(message);
  }

  /** POST an action, fetch the list again, announce what happened; null (after showing why) when refused. */
  async function act(url, fields, said) {
    showError("");
    try {
      const answer = await ui.post(url, fields);
      await refresh();
      ui.announce(said(answer));
      return answer;
    } catch (error) {
      showError(error.message);
      return null;
    }
  }

  const conversationOf = (li) => ({
    id: Number(li.querySelector("a[data-conversation-id]").dataset.conversationId),
    title: li.querySelector(".conversation-title").textContent,
    folderId: li.dataset.folderId || "",
    pinned: li.dataset.pinned === "1",
  });

  /** The user's folders, as the list shows them (its folder sections, or a search's hidden list of them). */
  const folders = () =>
    [...list.querySelectorAll("[data-folder-id][data-folder-name]")].map((el) => ({
      id: el.dataset.folderId,
      name: el.dataset.folderName,
    }));
  const folderName = (id) => folders().find((f) => f.id === String(id))?.name || "";

  function move(conversation, folderId) {
    const name = folderName(folderId);
    return act(`/c/${conversation.id}/move/`, { folder: folderId }, () =>
      folderId ? `“${conversation.title}” moved to ${name}.` : `“${conversation.title}” taken out of its folder.`);
  }

  function pin(conversation) {
    return act(`/c/${conversation.id}/pin/`, { pinned: conversation.pinned ? "0" : "1" }, (answer) =>
      answer.pinned ? `“${conversation.title}” pinned.` : `“${conversation.title}” unpinned.`);
  }

  // --- a new folder -------------------------------------------------------------------------------------------------
  function showNewFolder(open) {
    newForm.hidden = !open;
    newButton.setAttribute("aria-expanded", String(open));
    if (open) {
      newName.value = "";
      newName.focus();
    }
  }
  newButton.addEventListener("click", () => showNewFolder(newForm.hidden));
  document.getElementById("new-folder-cancel").addEventListener("click", () => {
    showNewFolder(false);
    newButton.focus();
  });
  newForm.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    event.stopPropagation(); // not the drawer, not the reply
    showNewFolder(false);
    newButton.focus();
  });
  newForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!newName.value.trim()) {
      showError("Give the folder a name.");
      newName.focus();
      return;
    }
    const folder = await act("/folders/", { name: newName.value }, (f) => `Folder ${f.name} created.`);
    if (!folder) return;
    showNewFolder(false);
    list.querySelector(`.folder[data-folder-id="${folder.id}"] .folder-toggle`)?.focus();
  });

  // --- a folder's header: collapse, rename, delete ----------------------------------------------------------------------
  function collapsedIds() {
    try {
      return new Set(JSON.parse(localStorage.getItem(COLLAPSED_KEY) || "[]").map(String));
    } catch {
      return new Set();
    }
  }

  function showCollapsed(section, collapsed) {
    section.classList.toggle("collapsed", collapsed);
    section.querySelector(".folder-toggle").setAttribute("aria-expanded", String(!collapsed));
    section.querySelector(".folder-body").hidden = collapsed;
  }

  function applyCollapsed() {
    const collapsed = collapsedIds();
    for (const section of list.querySelectorAll(".folder")) showCollapsed(section, collapsed.has(section.dataset.folderId));
  }

  function toggle(section) {
    const collapsed = collapsedIds();
    const id = section.dataset.folderId;
    if (collapsed.has(id)) collapsed.delete(id);
    else collapsed.add(id);
    try {
      localStorage.setItem(COLLAPSED_KEY, JSON.stringify([...collapsed]));
    } catch { /* private mode: collapsed until the list is fetched again */ }
    showCollapsed(section, collapsed.has(id));
  }

  function rename(section) {
    const head = section.querySelector(".folder-head");
    const toggleButton = head.querySelector(".folder-toggle");
    if (head.querySelector("input")) return;
    const before = section.dataset.folderName;
    ui.inlineEdit({
      value: before,
      label: `New name for folder ${before}`,
      maxLength: 100,
      className: "rename-input folder-rename",
      place(input) {
        toggleButton.hidden = true;
        toggleButton.before(input);
        editing = true;
      },
      async done(save, name) {
        editing = false;
        toggleButton.hidden = false;
        if (save && name && name !== before) {
          const answer = await act(`/folders/${section.dataset.folderId}/rename/`, { name }, (f) => `Folder renamed to ${f.name}.`);
          if (answer) {
            list.querySelector(`.folder[data-folder-id="${answer.id}"] .folder-toggle`)?.focus();
            return;
          }
        }
        toggleButton.focus();
        if (staleList) refresh();
      },
    });
  }

  async function remove(section) {
    const name = section.dataset.folderName;
    const sure = await ui.confirm(`Delete the folder “${name}”? Its conversations stay, out of any folder.`, "Delete folder");
    if (!sure) return;
    await act(`/folders/${section.dataset.folderId}/delete/`, {}, (answer) =>
      `Folder ${name} deleted; ${answer.moved_out} conversation${answer.moved_out === 1 ? "" : "s"} moved out of it.`);
  }

  // --- a conversation's ⋯ menu ------------------------------------------------------------------------------------------
  let menuButton = null;

  function closeMenu({ focus = false } = {}) {
    if (menu.hidden) return;
    menu.hidden = true; // its items stay until the next opening: a click on one is still inside the sidebar
    menuButton?.setAttribute("aria-expanded", "false");
    if (focus) menuButton?.focus();
    menuButton = null;
    if (staleList && !editing) refresh();
  }

  function menuItem(label, run) {
    const item = document.createElement("button");
    item.type = "button";
    item.setAttribute("role", "menuitem");
    item.tabIndex = -1;
    item.textContent = label;
    item.addEventListener("click", () => {
      closeMenu({ focus: true });
      run();
    });
    return item;
  }

  function openMenu(button) {
    closeMenu();
    const conversation = conversationOf(button.closest("li"));
    const items = [menuItem(conversation.pinned ? "Unpin" : "Pin to top", () => pin(conversation))];
    for (const folder of folders()) {
      if (folder.id !== conversation.folderId) items.push(menuItem(`Move to ${folder.name}`, () => move(conversation, folder.id)));
    }
    if (conversation.folderId) {
      items.push(menuItem(`Take out of ${folderName(conversation.folderId) || "its folder"}`, () => move(conversation, "")));
    }
    items.push(menuItem("New folder…", () => showNewFolder(true)));
    menu.replaceChildren(...items);
    menu.setAttribute("aria-label", `Actions for ${conversation.title}`);
    menu.hidden = false;
    menuButton = button;
    button.setAttribute("aria-expanded", "true");
    // beside its button, inside the window (the sidebar scrolls; the menu does not scroll with it)
    const spot = button.getBoundingClientRect();
    const size = menu.getBoundingClientRect();
    menu.style.top = `${Math.max(4, Math.min(spot.bottom + 2, window.innerHeight - size.height - 4))}px`;
    menu.style.left = `${Math.max(4, Math.min(spot.right - size.width, window.innerWidth - size.width - 4))}px`;
    items[0].focus();
  }

  menu.addEventListener("keydown", (event) => {
    const items = [...menu.querySelectorAll("[role=menuitem]")];
    const at = items.indexOf(document.activeElement);
    const go = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 }[event.key];
    if (go !== undefined) {
      event.preventDefault();
      items[(go + items.length) % items.length].focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation(); // not the drawer, not the reply
      closeMenu({ focus: true });
    } else if (event.key === "Tab") {
      closeMenu();
    }
  });
  document.addEventListener("click", (event) => {
    if (!menu.hidden && !menu.contains(event.target) && !menuButton?.contains(event.target)) closeMenu();
  });
  window.addEventListener("resize", () => closeMenu());
  document.getElementById("sidebar").addEventListener("scroll", () => closeMenu(), { passive: true });

  list.addEventListener("click", (event) => {
    const menuToggle = event.target.closest(".conversation-menu-button");
    if (menuToggle) {
      if (menuButton === menuToggle) closeMenu({ focus: true });
      else openMenu(menuToggle);
      return;
    }
    const section = event.target.closest(".folder");
    if (!section) return;
    if (event.target.closest(".folder-toggle")) toggle(section);
    else if (event.target.closest("[data-folder-action=rename]")) rename(section);
    else if (event.target.closest("[data-folder-action=delete]")) remove(section);
  });

  // --- drag a conversation onto a folder, or out of its folder onto the rest of the list ----------------------------
  let dragged = null;
  const dropTarget = (event) => event.target.closest?.(".folder[data-folder-id], [data-drop-out]");

  function markTarget(target) {
    for (const el of list.querySelectorAll(".drop-target")) if (el !== target) el.classList.remove("drop-target");
    target?.classList.add("drop-target");
  }

  list.addEventListener("dragstart", (event) => {
    const link = event.target.closest?.("a[data-conversation-id]");
    if (!link) return;
    closeMenu();
    dragged = conversationOf(link.closest("li"));
    event.dataTransfer.setData(DRAG_TYPE, String(dragged.id));
    event.dataTransfer.effectAllowed = "all"; // a link: it may still be dropped on the address bar or another tab
    list.classList.add("dragging");
    list.classList.toggle("dragging-from-folder", Boolean(dragged.folderId));
  });
  list.addEventListener("dragend", () => {
    dragged = null;
    list.classList.remove("dragging", "dragging-from-folder");
    markTarget(null);
  });
  list.addEventListener("dragover", (event) => {
    const target = dragged && dropTarget(event);
    if (!target || !event.dataTransfer.types.includes(DRAG_TYPE)) return;
    if (target.dataset.dropOut && !dragged.folderId) return; // already out of any folder
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    markTarget(target);
  });
  list.addEventListener("dragleave", (event) => {
    if (!list.contains(event.relatedTarget)) markTarget(null);
  });
  list.addEventListener("drop", (event) => {
    const target = dropTarget(event);
    const conversation = dragged;
    if (!target || !conversation || !event.dataTransfer.types.includes(DRAG_TYPE)) return;
    event.preventDefault();
    markTarget(null);
    const folderId = target.dataset.folderId || "";
    if (folderId !== conversation.folderId) move(conversation, folderId);
  });

  // --- the list fetched again -------------------------------------------------------------------------------------------
  list.addEventListener("chatweb:listed", applyCollapsed);
  document.addEventListener("chatweb:sidebar", () => {
    if (editing || !menu.hidden || dragged) staleList = true; // fetched when that ends
    else refresh();
  });
  applyCollapsed();
  window.chatwebFolders = { refresh, openMenu, showNewFolder };
})();
