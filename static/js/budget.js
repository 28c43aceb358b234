// The chat page's cost lines: the conversation's running total in the header (every branch and regeneration),
// the budget lines (the user's and each group's) and the budget alert notices. Fetched again after each
// finished reply (stopped and failed ones too), each refusal and each new title (its call is billed too), so
// they never go stale (the server formats the words: conversations/money.py).
(() => {
  "use strict";
  const chat = document.getElementById("chat");
  if (!chat) return;
  const own = document.getElementById("budget-left");
  const cost = document.getElementById("conversation-cost");
  const alerts = document.getElementById("budget-alerts");
  let pending = null;
  let again = false;

  function showOwn(status) {
    if (!own) return;
    if (status.budget === null) { own.hidden = true; return; }
    own.hidden = false;
    own.textContent = status.label;
    own.title = status.title;
    own.classList.toggle("over", Boolean(status.over));
  }

  function showGroups(groups) {
    for (const group of groups || []) {
      const line = [...document.querySelectorAll(".budget-group")].find((el) => el.dataset.group === group.name);
      if (!line) continue; // a group joined since the page loaded shows on the next page
      line.textContent = `Group ${group.name}: ${group.label}`;
      line.title = `Group ${group.name}: ${group.title}`;
      line.classList.toggle("over", Boolean(group.over));
    }
  }

  function showConversation(total) {
    if (!cost || !total || String(total.id) !== chat.dataset.conversationId) return;
    cost.textContent = `$${total.cost} · ${total.requests} request${total.requests === 1 ? "" : "s"}`;
    cost.hidden = false;
  }

  function showAlerts(notices) {
    if (!alerts) return;
    alerts.replaceChildren(...(notices || []).map((text, i) => {
      const p = document.createElement("p");
      p.className = "budget-alert";
      if (i === 0) p.id = "budget-alert";
      p.setAttribute("role", "alert");
      p.textContent = text;
      return p;
    }));
  }

  function refresh() {
    if (pending) { again = true; return pending; } // a reply that ended meanwhile is counted by one more fetch
    const id = chat.dataset.conversationId;
    const url = id ? `/usage/budget.json?conversation=${encodeURIComponent(id)}` : "/usage/budget.json";
    pending = fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : null))
      .then((status) => {
        if (!status) return;
        showOwn(status);
        showGroups(status.groups);
        showConversation(status.conversation);
        showAlerts(status.alerts);
      })
      .catch(() => {})
      .finally(() => {
        pending = null;
        if (again) { again = false; refresh(); }
      });
    return pending;
  }

  document.addEventListener("chatweb:done", refresh);
  document.addEventListener("chatweb:error", refresh);
  document.addEventListener("chatweb:title", refresh);
})();
