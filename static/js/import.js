// The settings page's import form: while the file uploads and imports (a plain form POST, read whole by the
// server), show that the page is working and keep the form from being sent twice.
(() => {
  "use strict";
  const form = document.getElementById("import-form");
  if (!form) return;
  form.addEventListener("submit", () => {
    const progress = document.getElementById("import-progress");
    const status = document.getElementById("import-status");
    const button = form.querySelector("button[type=submit]");
    if (progress) progress.hidden = false;  // no value: an indeterminate bar
    if (status) status.textContent = "Uploading and importing…";
    // disabled after this tick, so the submission itself still goes out
    if (button) setTimeout(() => { button.disabled = true; }, 0);
  });
})();
