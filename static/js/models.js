// The model picker's line beside it: the chosen model's description, prices and context, and a warning when
// chatweb could not connect to its provider recently (the options carry it: templates/chat.html).
(() => {
  "use strict";
  const select = document.getElementById("model-select");
  const details = document.getElementById("model-details");
  if (!select || !details) return;

  function describeModel() {
    const option = select.selectedOptions[0];
    if (!option || !option.value) { details.textContent = ""; return; }
    const parts = [option.dataset.description, option.dataset.details];
    if (option.dataset.unreachable) parts.push("⚠ chatweb could not connect to this provider recently");
    details.textContent = parts.filter(Boolean).join(" · ");
    details.classList.toggle("warning", Boolean(option.dataset.unreachable));
  }

  select.addEventListener("change", describeModel);
  describeModel();
})();
