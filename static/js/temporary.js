// The new chat's "Temporary chat" toggle: the first message then starts a conversation that is listed nowhere,
// cannot be shared, and is deleted when this tab closes (conversations/chat/temporary.py). A badge says so.
(() => {
  "use strict";
  const toggle = document.getElementById("temporary-toggle");
  const badge = document.getElementById("temporary-badge");
  if (!badge) return;

  function show(on) {
    badge.hidden = !on;
  }

  toggle?.addEventListener("change", () => {
    show(toggle.checked);
    window.chatwebUI?.announce(toggle.checked
      ? "Temporary chat: it will not be kept after this tab closes."
      : "This chat will be kept.");
  });

  // Back after the connection was lost for longer than the grace: the chat is gone, as if its tab had closed.
  document.addEventListener("chatweb:error", (event) => {
    const frame = event.detail || {};
    if (badge.hidden || frame.code !== "not_found" || frame.request_id || frame.message_id) return;
    badge.textContent = "Temporary chat ended: it was deleted while this tab was disconnected";
    window.chatwebUI?.announce(badge.textContent);
  });

  window.chatwebTemporary = {
    /** Whether the next new conversation should be temporary. */
    wanted: () => Boolean(toggle?.checked),
    /** The server started the temporary conversation: the choice is made, and it is not shareable. */
    started() {
      show(true);
      toggle?.closest("label")?.setAttribute("hidden", "");
      const share = document.getElementById("share-button");
      if (share) share.hidden = true;
    },
  };
})();
