// The chat page's Share button: make a read-only link to the conversation as it is now, show it and copy it;
// "Stop sharing" revokes every link of the conversation. Links are listed, with dates, on /settings/.
(() => {
  "use strict";
  const ui = window.chatwebUI;
  const shareButton = document.getElementById("share-button");
  const panel = document.getElementById("share-panel");
  if (!ui || !shareButton || !panel) return;
  const urlField = document.getElementById("share-url");
  const status = document.getElementById("share-status");
  const conversationId = () => document.getElementById("chat").dataset.conversationId;

  shareButton.addEventListener("click", async () => {
    const id = conversationId();
    if (!id) return;
    shareButton.disabled = true;
    try {
      const answer = await ui.post(`/c/${id}/share/`);
      urlField.value = new URL(answer.url, window.location.origin).href;
      panel.hidden = false;
      urlField.focus();
      urlField.select();
      let copied = false;
      try {
        await navigator.clipboard.writeText(urlField.value);
        copied = true;
      } catch { /* no clipboard permission: the link is selected for copying by hand */ }
      status.textContent = copied
        ? "Link copied. Anyone with it can read this conversation as it is now."
        : "Anyone with this link can read this conversation as it is now.";
      ui.announce(copied ? "Share link made and copied." : "Share link made.");
    } catch (error) {
      panel.hidden = false;
      urlField.value = "";
      status.textContent = error.message;
    } finally {
      shareButton.disabled = false;
    }
  });

  document.getElementById("unshare-button").addEventListener("click", async () => {
    const id = conversationId();
    if (!id) return;
    try {
      const answer = await ui.post(`/c/${id}/unshare/`);
      urlField.value = "";
      status.textContent = answer.revoked ? "Sharing stopped: the links no longer open." : "This conversation had no links.";
      ui.announce("Sharing stopped.");
    } catch (error) {
      status.textContent = error.message;
    }
  });

  document.getElementById("share-close").addEventListener("click", () => { panel.hidden = true; });
})();
