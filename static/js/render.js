// Markdown of replies in the browser, while they stream: the same policy as conversations/chat/rendering.py, which the
// page hands over in #render-policy (markdown-it without raw HTML, then DOMPurify with that allowlist). Code blocks
// get syntax highlighting (highlight.js) and a copy button.
(() => {
  "use strict";
  const policyEl = document.getElementById("render-policy");
  if (!policyEl || !window.markdownit || !window.DOMPurify) return;
  const policy = JSON.parse(policyEl.textContent);
  const purify = window.DOMPurify;
  const hljs = window.hljs;
  const MAX_AUTO_DETECT = 4000; // characters: larger blocks without a language stay plain

  // --- markdown-it, configured as rendering._markdown() -------------------------------------------------------
  const md = window.markdownit({ html: false, linkify: false, typographer: false });
  md.core.ruler.push("chatweb_alignment", (state) => {
    for (const token of state.tokens) {
      if (token.type !== "th_open" && token.type !== "td_open") continue;
      const style = token.attrGet("style");
      if (style === null) continue;
      token.attrs = token.attrs.filter(([name]) => name !== "style");
      const found = /^text-align:(left|center|right)$/.exec(style);
      if (found) token.attrSet("class", `align-${found[1]}`);
    }
  });
  md.renderer.rules.image = (tokens, idx, options, env, self) => {
    const token = tokens[idx];
    const src = token.attrGet("src") || "";
    const alt = self.renderInlineAsText(token.children || [], options, env);
    return `<a href="${md.utils.escapeHtml(src)}">${md.utils.escapeHtml(alt || src)}</a>`;
  };

  // --- DOMPurify, configured as rendering._CLEANER ----------------------------------------------------------------
  const allowedAttributes = new Set(Object.values(policy.attributes).flat());
  const classPatterns = Object.fromEntries(
    Object.entries(policy.classPatterns).map(([tag, pattern]) => [tag, new RegExp(pattern)]),
  );
  const config = {
    ALLOWED_TAGS: policy.tags,
    ALLOWED_ATTR: [...allowedAttributes],
    ALLOWED_URI_REGEXP: new RegExp(`^(?:${policy.urlSchemes.join("|")}):`, "i"),
    ADD_URI_SAFE_ATTR: ["start"], // a number, not a URL
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    ALLOW_UNKNOWN_PROTOCOLS: false,
    RETURN_DOM_FRAGMENT: true,
  };
  purify.addHook("uponSanitizeAttribute", (node, data) => {
    const tag = node.nodeName.toLowerCase();
    if (!(policy.attributes[tag] || []).includes(data.attrName)) {
      data.keepAttr = false;
    } else if (data.attrName === "class") {
      const pattern = classPatterns[tag];
      data.keepAttr = Boolean(pattern && pattern.test(data.attrValue));
    }
  });
  purify.addHook("afterSanitizeAttributes", (node) => {
    if (node.nodeName === "A") {
      node.setAttribute("target", policy.linkTarget);
      node.setAttribute("rel", policy.linkRel);
    }
  });

  /** Markdown to a sanitised DocumentFragment. */
  function fragment(text) {
    return purify.sanitize(md.render(text || ""), config);
  }

  // --- code blocks: highlighting and a copy button ------------------------------------------------------------
  function languageOf(code) {
    const found = /(?:^|\s)language-(\S+)/.exec(code.className);
    return found ? found[1] : "";
  }

  function highlight(code, streaming) {
    if (!hljs || code.dataset.highlighted) return;
    const language = languageOf(code);
    const text = code.textContent;
    let result = null;
    try {
      if (language && hljs.getLanguage(language)) result = hljs.highlight(text, { language, ignoreIllegals: true });
      else if (!language && !streaming && text.length <= MAX_AUTO_DETECT) result = hljs.highlightAuto(text);
    } catch {
      result = null;
    }
    if (result && (language || result.relevance >= 5)) {
      code.innerHTML = result.value; // highlight.js escapes the text it wraps in <span class="hljs-...">
      code.classList.add("hljs");
      if (!language && result.language) code.dataset.language = result.language;
    }
    code.dataset.highlighted = "yes";
  }

  async function copyText(text, button) {
    const label = button.textContent;
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => { button.textContent = label; }, 1500);
  }

  function decorateCode(pre, streaming) {
    const code = pre.querySelector("code");
    if (!code) return;
    highlight(code, streaming);
    if (pre.parentElement && pre.parentElement.classList.contains("code-block")) return;
    const box = document.createElement("div");
    box.className = "code-block";
    const bar = document.createElement("div");
    bar.className = "code-bar";
    const label = document.createElement("span");
    label.className = "code-language";
    label.textContent = languageOf(code) || code.dataset.language || "text";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "ghost code-copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", `Copy ${label.textContent} code`);
    button.addEventListener("click", () => copyText(code.textContent, button));
    bar.append(label, button);
    pre.replaceWith(box);
    box.append(bar, pre);
  }

  /** Highlighting and copy buttons for the code blocks inside `el` (server-rendered or live). */
  function enhance(el, options = {}) {
    for (const pre of el.querySelectorAll("pre")) decorateCode(pre, options.streaming);
    el.dataset.enhanced = "yes";
  }

  /** Render `text` (markdown) into `el`, replacing what it held: only this element changes. */
  function content(el, text, options = {}) {
    el.classList.add("markdown");
    el.replaceChildren(fragment(text));
    enhance(el, options);
  }

  // Server-rendered replies are enhanced when they come near the viewport (a long chat stays quick to open).
  const pending = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      pending.unobserve(entry.target);
      enhance(entry.target);
    }
  }, { rootMargin: "800px 0px" });

  function enhanceLater(root) {
    for (const el of root.querySelectorAll(".content.markdown:not([data-enhanced])")) pending.observe(el);
  }

  window.chatwebRender = { content, fragment, enhance, enhanceLater, copyText, policy };
  enhanceLater(document);
})();
