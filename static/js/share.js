// The chat page's Share button: make a read-only link to the conversation as it is now, show it and copy it;
// "Include attachments" (off by default) makes the link show the messages' files too: changing it replaces the
// link shown by a new one (the old one is revoked). "Stop sharing" revokes every link of the conversation.
// Links are listed, with dates, on /settings/.
(() => {
  "use strict";
  const ui = window.chatwebUI;
  const shareButton = document.getElementById("share-button");
  const panel = document.getElementById("share-panel");
  if (!ui || !shareButton || !panel) return;
  const urlField = document.getElementById("share-url");
  const status = document.getElementById("share-status");
  const withFiles = document.getElementById("share-attachments");
  const conversationId = () => document.getElementById("chat").dataset.conversationId;
  let shownLink = null; // id of the link in the bar

  async function makeLink() {
    const id = conversationId();
    if (!id) return;
    shareButton.disabled = true;
    try {
      const previous = shownLink;
      const answer = await ui.post(`/c/${id}/share/`, { include_attachments: withFiles?.checked ? "1" : "" });
      shownLink = answer.id;
      if (previous) await ui.post(`/settings/shares/${previous}/revoke/`).catch(() => {});
      urlField.value = new URL(answer.url, window.location.origin).href;
      panel.hidden = false;
      urlField.focus();
      urlField.select();
      let copied = false;
      try {
        await navigator.clipboard.writeText(urlField.value);
        copied = true;
      } catch { /* no clipboard permission: the link is selected for copying by hand */ }
      const what = answer.include_attachments ? "this conversation and its files" : "this conversation";
      status.textContent = copied
        ? `Link copied. Anyone with it can read ${what} as it is now.`
        : `Anyone with this link can read ${what} as it is now.`;
      ui.announce(copied ? "Share link made and copied." : "Share link made.");
    } catch (error) {
      panel.hidden = false;
      urlField.value = "";
      status.textContent = error.message;
    } finally {
      shareButton.disabled = false;
    }
  }

  shareButton.addEventListener("click", makeLink);
  withFiles?.addEventListener("change", () => { if (shownLink) makeLink(); });

  document.getElementById("unshare-button").addEventListener("click", async () => {
    const id = conversationId();
    if (!id) return;
    try {
      const answer = await ui.post(`/c/${id}/unshare/`);
      urlField.value = "";
      shownLink = null;
      status.textContent = answer.revoked ? "Sharing stopped: the links no longer open." : "This conversation had no links.";
      ui.announce("Sharing stopped.");
    } catch (error) {
      status.textContent = error.message;
    }
  });

  document.getElementById("share-close").addEventListener("click", () => { panel.hidden = true; });
})();
