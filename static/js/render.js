// Markdown of replies in the browser, while they stream: the same policy as conversations/chat/rendering.py, which the
// page hands over in #render-policy (markdown-it without raw HTML, then DOMPurify with that allowlist). Code blocks
// get syntax highlighting (highlight.js) and a copy button. Math, marked by the markdown step as in rendering.py
// (`.math-inline`, `.math-display` holding the TeX as text), is typeset by KaTeX into DOM nodes (never an HTML string),
// then held to an allowlist of its own (MATH_TAGS, MATH_ATTRIBUTES): no link, no URL, no handler can come out of it.
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

  // --- math: the same rules as rendering._math_inline / _math_block ---------------------------------------------
  const INLINE_CLOSERS = { "\\(": "\\)", "\\[": "\\]", "$$": "$$" };
  function mathInline(state, silent) {
    const src = state.src;
    const start = state.pos;
    const opener = src.slice(start, start + 2);
    let tex;
    let after;
    let display;
    if (Object.hasOwn(INLINE_CLOSERS, opener)) {
      const end = src.indexOf(INLINE_CLOSERS[opener], start + 2);
      if (end < 0 || end === start + 2) return false;
      tex = src.slice(start + 2, end);
      after = end + 2;
      display = opener !== "\\(";
    } else if (src[start] === "$") {
      let end = start + 1;
      for (;;) {
        end = src.indexOf("$", end);
        if (end < 0) return false;
        if (src[end - 1] !== "\\") break;
        end += 1;
      }
      tex = src.slice(start + 1, end);
      after = end + 1;
      if (!tex || /\s/.test(tex[0]) || /\s/.test(tex[tex.length - 1]) || (after < src.length && /[0-9]/.test(src[after]))) {
        return false;
      }
      display = false;
    } else return false;
    if (!silent) {
      const token = state.push("math_inline", "span", 0);
      token.content = tex;
      token.markup = opener;
      token.meta = { display };
    }
    state.pos = after;
    return true;
  }
  function mathBlock(state, startLine, endLine, silent) {
    if (state.sCount[startLine] - state.blkIndent >= 4) return false;
    const first = state.src.slice(state.bMarks[startLine] + state.tShift[startLine], state.eMarks[startLine]);
    const opener = first.slice(0, 2);
    if (opener !== "$$" && opener !== "\\[") return false;
    const closer = opener === "$$" ? "$$" : "\\]";
    const rest = first.slice(2).trimEnd();
    let line = startLine;
    const lines = [];
    if (rest.length >= 2 && rest.endsWith(closer)) lines.push(rest.slice(0, -2));
    else {
      lines.push(rest);
      for (;;) {
        line += 1;
        if (line >= endLine) return false;
        const text = state.src.slice(state.bMarks[line] + state.tShift[line], state.eMarks[line]).trimEnd();
        if (text.endsWith(closer)) { lines.push(text.slice(0, -2)); break; }
        lines.push(text);
      }
    }
    if (silent) return true;
    state.line = line + 1;
    const token = state.push("math_block", "div", 0);
    token.block = true;
    token.content = lines.join("\n").trim();
    token.markup = opener;
    token.map = [startLine, state.line];
    return true;
  }
  md.inline.ruler.before("escape", "math_inline", mathInline);
  md.block.ruler.before("fence", "math_block", mathBlock, { alt: ["paragraph", "reference", "blockquote", "list"] });
  md.renderer.rules.math_inline = (tokens, idx) => {
    const kind = tokens[idx].meta.display ? "math-display" : "math-inline";
    return `<span class="${kind}">${md.utils.escapeHtml(tokens[idx].content)}</span>`;
  };
  md.renderer.rules.math_block = (tokens, idx) => `<div class="math-display">${md.utils.escapeHtml(tokens[idx].content)}</div>\n`;

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

  // --- math: KaTeX builds DOM nodes from the TeX text (its inline styles are set through CSSOM, which the CSP's
  // style-src does not govern; no style attribute is parsed), then everything it made is held to this allowlist.
  const katex = window.katex;
  const MATH_TAGS = new Set([
    "span", "math", "semantics", "annotation", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "msup", "msub",
    "msubsup", "mfrac", "msqrt", "mroot", "mover", "munder", "munderover", "mtable", "mtr", "mtd", "mpadded",
    "mphantom", "mstyle", "menclose", "mglyph", "svg", "path", "line", "g",
  ]);
  const MATH_ATTRIBUTES = new Set([
    "class", "style", "aria-hidden", "xmlns", "encoding", "display", "mathvariant", "mathcolor", "mathbackground",
    "mathsize", "fence", "separator", "stretchy", "lspace", "rspace", "minsize", "maxsize", "accent", "accentunder",
    "movablelimits", "linethickness", "columnalign", "rowalign", "columnspacing", "rowspacing", "columnlines",
    "rowlines", "frame", "scriptlevel", "displaystyle", "width", "height", "depth", "voffset", "notation",
    "viewBox", "preserveAspectRatio", "d", "x1", "x2", "y1", "y2", "stroke-width",
  ]);
  const MATH_OPTIONS = {
    throwOnError: false, trust: false, strict: "ignore", output: "htmlAndMathml", maxSize: 20, maxExpand: 500,
  };

  function cleanMath(root) {
    for (const el of [...root.querySelectorAll("*")]) {
      if (!MATH_TAGS.has(el.localName)) {
        el.replaceWith(document.createTextNode(el.textContent));
        continue;
      }
      for (const attr of [...el.attributes]) {
        const value = attr.value.toLowerCase();
        if (!MATH_ATTRIBUTES.has(attr.name) || value.includes("url(") || value.includes("javascript:")) {
          el.removeAttribute(attr.name);
        }
      }
    }
  }

  // KaTeX writes a few inline styles as a `style` attribute (its error colour, some SVG widths, a MathML text shadow);
  // the CSP refuses those. Each such node of its tree sets the same declarations through CSSOM instead.
  function styleThroughCssom(vnode) {
    if (!vnode || typeof vnode !== "object") return;
    const attributes = vnode.attributes;
    if (attributes && typeof attributes.style === "string") {
      const css = attributes.style;
      delete attributes.style;
      const build = vnode.toNode;
      vnode.toNode = function toNode() {
        const node = build.call(this);
        node.style.cssText += `;${css}`;
        return node;
      };
    }
    for (const child of vnode.children || []) styleThroughCssom(child);
  }

  function typeset(el) {
    if (!katex) return;
    for (const node of el.querySelectorAll(".math-inline:not([data-typeset]), .math-display:not([data-typeset])")) {
      const tex = node.textContent;
      const box = document.createElement("span");
      try {
        const tree = katex.__renderToDomTree(tex, { ...MATH_OPTIONS, displayMode: node.classList.contains("math-display") });
        styleThroughCssom(tree);
        box.append(tree.toNode());
      } catch {
        continue; // shown as its TeX
      }
      cleanMath(box);
      node.dataset.typeset = "yes"; // once (the TeX stays in the MathML's annotation, for screen readers and copying)
      node.replaceChildren(...box.childNodes);
    }
  }

  /** Highlighting and copy buttons for the code blocks inside `el` (server-rendered or live), typeset math. */
  function enhance(el, options = {}) {
    typeset(el);
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

  window.chatwebRender = { content, fragment, enhance, enhanceLater, copyText, policy, typeset };
  enhanceLater(document);
})();
