// The theme the person chose in the account menu (light, dark, or the system's), remembered in localStorage.
// Loaded in <head> without defer so that the page is painted in that theme from the start (the CSP refuses an
// inline script, and a file runs as early).
(() => {
  "use strict";
  const KEY = "chatweb-theme";
  const root = document.documentElement;
  const stored = () => {
    try { return localStorage.getItem(KEY); } catch { return null; } // storage may be refused
  };
  function apply(theme) {
    if (theme === "light" || theme === "dark") root.dataset.theme = theme;
    else delete root.dataset.theme;
  }
  apply(stored());

  document.addEventListener("DOMContentLoaded", () => {
    const menu = document.getElementById("account-menu");
    if (!menu) return;
    const current = stored() || "system";
    for (const radio of menu.querySelectorAll("input[name=theme]")) {
      radio.checked = radio.value === current;
      radio.addEventListener("change", () => {
        try {
          if (radio.value === "system") localStorage.removeItem(KEY);
          else localStorage.setItem(KEY, radio.value);
        } catch { /* chosen for this page only */ }
        apply(radio.value);
      });
    }
    // the menu closes on a click elsewhere and on Esc, as menus do
    document.addEventListener("click", (event) => {
      if (menu.open && !menu.contains(event.target)) menu.open = false;
    });
    menu.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && menu.open) {
        event.stopPropagation();
        menu.open = false;
        menu.querySelector("summary").focus();
      }
    });
  });
  // another tab changed it
  window.addEventListener("storage", (event) => { if (event.key === KEY) apply(event.newValue); });
})();
