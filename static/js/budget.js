// The composer's budget line: fetched again after each finished reply and each refusal, so it never goes
// stale (the server formats the words: conversations/usage/money.py).
(() => {
  "use strict";
  const label = document.getElementById("budget-left");
  if (!label) return;
  let pending = null;

  function refreshBudget() {
    if (pending) return pending;
    pending = fetch("/usage/budget.json", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : null))
      .then((status) => {
        if (!status) return;
        if (status.budget === null) { label.hidden = true; return; }
        label.hidden = false;
        label.textContent = status.label;
        label.title = status.title;
        label.classList.toggle("over", Boolean(status.over));
      })
      .catch(() => {})
      .finally(() => { pending = null; });
    return pending;
  }

  document.addEventListener("chatweb:done", refreshBudget);
  document.addEventListener("chatweb:error", refreshBudget);
})();
