// Thumbs up / down under each finished reply, with an optional comment (a box opens on thumbs down, and on
// request after thumbs up). Pressing the chosen thumb again removes the feedback. Stored per user and reply
// (POST /c/<id>/m/<id>/feedback/); the page renders the state after a reload.
(() => {
  "use strict";
  const ui = window.chatwebUI;
  const messagesEl = document.getElementById("messages");
  if (!ui || !messagesEl) return;
  const conversationId = () => document.getElementById("chat").dataset.conversationId;

  function showState(group, rating, comment) {
    group.dataset.rating = rating || "";
    for (const b of group.querySelectorAll("button[data-action=feedback]")) {
      b.setAttribute("aria-pressed", String(b.dataset.rating === rating));
    }
    group.querySelector(".feedback-comment")?.remove();
    if (!rating) group.querySelector("button[data-action=feedback-comment]")?.remove();
    const source = group.querySelector("template.feedback-comment-source");
    if (source) source.content.textContent = comment || "";
    if (comment) {
      const shown = document.createElement("span");
      shown.className = "feedback-comment muted";
      shown.title = "Your comment";
      shown.textContent = `“${comment.length > 80 ? `${comment.slice(0, 79)}…` : comment}”`;
      source ? source.before(shown) : group.append(shown);
    }
  }

  async function give(article, rating, comment = "") {
    const answer = await ui.post(`/c/${conversationId()}/m/${article.dataset.messageId}/feedback/`, { rating, comment });
    showState(article.querySelector(".feedback"), answer.rating, answer.comment);
    return answer;
  }

  function closeBox(article) {
    article.querySelector(".feedback-box")?.remove();
  }

  function openBox(article, rating) {
    closeBox(article);
    const group = article.querySelector(".feedback");
    const box = document.createElement("form");
    box.className = "feedback-box";
    const label = document.createElement("label");
    const id = `feedback-comment-${article.dataset.messageId}`;
    label.htmlFor = id;
    label.textContent = rating === "down" ? "What was wrong with this reply? (optional)" : "What was good? (optional)";
    const area = document.createElement("textarea");
    area.id = id;
    area.rows = 2;
    area.maxLength = 2000;
    area.value = group.querySelector("template.feedback-comment-source")?.content.textContent || "";
    const bar = document.createElement("div");
    bar.className = "feedback-box-actions";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "secondary";
    cancel.textContent = "Close";
    const save = document.createElement("button");
    save.type = "submit";
    save.textContent = "Send feedback";
    const status = document.createElement("span");
    status.className = "muted feedback-status";
    status.setAttribute("role", "status");
    bar.append(cancel, save, status);
    box.append(label, area, bar);
    cancel.addEventListener("click", () => closeBox(article));
    area.addEventListener("keydown", (event) => {
      if (event.key === "Escape") { event.stopPropagation(); closeBox(article); }
    });
    box.addEventListener("submit", async (event) => {
      event.preventDefault();
      save.disabled = true;
      try {
        await give(article, rating, area.value);
        closeBox(article);
        ui.announce("Thank you: feedback sent.");
      } catch (error) {
        status.textContent = error.message;
        save.disabled = false;
      }
    });
    article.querySelector(".message-foot").after(box);
    area.focus();
  }

  messagesEl.addEventListener("click", async (event) => {
    const target = event.target.closest("button[data-action=feedback], button[data-action=feedback-comment]");
    const article = target?.closest("article.message");
    if (!target || !article) return;
    const group = article.querySelector(".feedback");
    if (target.dataset.action === "feedback-comment") {
      openBox(article, group.dataset.rating);
      return;
    }
    const rating = target.dataset.rating;
    const again = group.dataset.rating === rating; // pressing the chosen thumb again takes it back
    try {
      const answer = await give(article, again ? "" : rating);
      closeBox(article);
      if (!answer.rating) {
        ui.announce("Feedback removed.");
      } else if (answer.rating === "down") {
        openBox(article, "down");
      } else {
        ui.announce("Thank you: feedback sent.");
        const more = document.createElement("button");
        more.type = "button";
        more.className = "link";
        more.dataset.action = "feedback-comment";
        more.textContent = "Add a comment";
        group.querySelector("button[data-action=feedback-comment]")?.remove();
        group.append(more);
      }
    } catch (error) {
      window.chatweb?.showError({ message: error.message });
    }
  });
})();
