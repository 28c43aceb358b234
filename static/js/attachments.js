// The composer's attachments: a file button, drag and drop, pasted images. Each file is uploaded at once
// (POST /attachments/, with progress) and shown as a chip (the server's thumbnail, name, size, remove) until the
// message is sent; chat.js sends the ids with `chat.send` (window.chatwebAttachments).
(() => {
  "use strict";
  const form = document.getElementById("composer");
  const fileInput = document.getElementById("attachment-input");
  const list = document.getElementById("composer-attachments");
  if (!form || !fileInput || !list) return;
  const csrf = () => form.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";
  const items = []; // {id, name, kind, size, uploading, error, el}

  function sizeText(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
    return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
  }

  function refresh() {
    list.hidden = items.length === 0;
    form.dispatchEvent(new CustomEvent("chatweb:attachments")); // chat.js estimates the draft again
  }

  function remove(item) {
    const at = items.indexOf(item);
    if (at >= 0) items.splice(at, 1);
    item.xhr?.abort();
    item.el.remove();
    refresh();
  }

  function chip(item, file) {
    const li = document.createElement("li");
    li.className = "attachment-chip uploading";
    const name = document.createElement("span");
    name.className = "attachment-name";
    name.textContent = file.name || "pasted image";
    const size = document.createElement("span");
    size.className = "attachment-size muted";
    size.textContent = sizeText(file.size);
    const progress = document.createElement("progress");
    progress.max = 100;
    progress.value = 0;
    progress.className = "attachment-progress";
    progress.setAttribute("aria-label", `Uploading ${name.textContent}`);
    const removeButton = document.createElement("button");
    removeButton.type = "button";
    removeButton.className = "icon-button attachment-remove";
    removeButton.setAttribute("aria-label", `Remove ${name.textContent}`);
    removeButton.textContent = "✕";
    removeButton.addEventListener("click", () => remove(item));
    li.append(name, " ", size, progress, removeButton);
    item.el = li;
    item.progress = progress;
    list.append(li);
  }

  function failed(item, message) {
    item.uploading = false;
    item.error = message;
    item.el.classList.remove("uploading");
    item.el.classList.add("failed");
    item.progress.remove();
    const error = document.createElement("span");
    error.className = "field-error attachment-error";
    error.setAttribute("role", "alert");
    error.textContent = message;
    item.el.querySelector(".attachment-remove").before(error);
  }

  function upload(file) {
    const item = { id: null, name: file.name || "pasted image", kind: null, size: file.size, uploading: true, error: null };
    items.push(item);
    chip(item, file);
    refresh();
    const body = new FormData();
    body.append("file", file, file.name || "pasted-image.png");
    const xhr = new XMLHttpRequest();
    item.xhr = xhr;
    xhr.open("POST", "/attachments/");
    xhr.setRequestHeader("X-CSRFToken", csrf());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) item.progress.value = Math.round((event.loaded / event.total) * 100);
    });
    xhr.addEventListener("load", () => {
      item.xhr = null;
      let answer = null;
      try { answer = JSON.parse(xhr.responseText); } catch { answer = null; }
      if (xhr.status === 201 && answer && answer.id) {
        Object.assign(item, { id: answer.id, kind: answer.kind, size: answer.size, uploading: false });
        item.el.classList.remove("uploading");
        item.el.dataset.attachmentId = answer.id;
        item.el.querySelector(".attachment-size").textContent = sizeText(answer.size);
        if (answer.kind === "image") { // the server's small preview, never the full image
          const img = document.createElement("img");
          img.className = "attachment-thumb";
          img.alt = "";
          img.src = `/attachments/${encodeURIComponent(answer.id)}/thumbnail/`;
          item.el.prepend(img);
        }
        item.progress.remove();
        refresh();
      } else {
        failed(item, answer?.error?.message || `The upload failed (HTTP ${xhr.status}).`);
      }
    });
    xhr.addEventListener("error", () => { item.xhr = null; failed(item, "The upload failed: no connection."); });
    xhr.send(body);
  }

  function addFiles(files) {
    for (const file of files) upload(file);
  }

  fileInput.addEventListener("change", () => {
    addFiles([...fileInput.files]);
    fileInput.value = ""; // the same file may be chosen again
  });
  form.addEventListener("dragover", (event) => {
    if (![...(event.dataTransfer?.types || [])].includes("Files")) return;
    event.preventDefault();
    form.classList.add("dropping");
  });
  form.addEventListener("dragleave", () => form.classList.remove("dropping"));
  form.addEventListener("drop", (event) => {
    form.classList.remove("dropping");
    if (!event.dataTransfer?.files?.length) return;
    event.preventDefault();
    addFiles([...event.dataTransfer.files]);
  });
  form.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files || [])];
    if (!files.length) return; // text pastes as text
    event.preventDefault();
    addFiles(files);
  });

  /** The attachments a message shows: thumbnails for images, links for documents (as the server renders them). */
  function render(messageEl, attachments) {
    if (!attachments || !attachments.length || messageEl.querySelector(".message-attachments")) return;
    const ul = document.createElement("ul");
    ul.className = "message-attachments";
    ul.setAttribute("aria-label", "Attachments");
    for (const a of attachments) {
      const li = document.createElement("li");
      li.className = `attachment attachment-${a.kind}`;
      li.dataset.attachmentId = a.id;
      const link = document.createElement("a");
      link.href = `/attachments/${encodeURIComponent(a.id)}/`;
      if (a.kind === "image") {
        link.target = "_blank";
        link.rel = "noopener";
        const img = document.createElement("img");
        img.className = "attachment-thumb";
        img.src = `${link.href}thumbnail/`;
        img.alt = a.name;
        link.append(img);
      } else {
        link.className = "attachment-file";
        link.download = "";
        link.textContent = a.name;
      }
      const name = document.createElement("span");
      name.className = "attachment-name";
      name.textContent = a.name;
      const size = document.createElement("span");
      size.className = "attachment-size muted";
      size.textContent = sizeText(a.size);
      li.append(link, name, " ", size);
      ul.append(li);
    }
    messageEl.querySelector(".content").after(ul);
  }

  window.chatwebAttachments = {
    ids: () => items.filter((i) => i.id).map((i) => i.id),
    uploading: () => items.some((i) => i.uploading),
    failed: () => items.some((i) => i.error),
    clear: () => { for (const item of [...items]) remove(item); },
    render,
  };
})();
