// The console's Broadcasts: the compose form (formatting buttons, photo upload, versions per language, filters with
// the audience count, a preview drawn like a Telegram message) and a broadcast's live progress. app.js hands in its
// helpers; the server checks everything again.

const TAGS = new Set(["B", "STRONG", "I", "EM", "U", "INS", "S", "STRIKE", "DEL", "CODE", "PRE", "A", "TG-SPOILER",
  "BLOCKQUOTE", "SPAN", "TG-EMOJI"]);
const POLL_EVERY = 2000;
const AUDIENCE_AFTER = 300; // ms of quiet before the count is asked for

// Telegram's HTML subset as page elements: allowed tags are rebuilt empty of attributes, everything else is text.
function drawn(source, into) {
  for (const node of source.childNodes) {
    if (node.nodeType === Node.TEXT_NODE) into.append(node.textContent);
    else if (node.nodeType === Node.ELEMENT_NODE) {
      if (TAGS.has(node.tagName)) {
        const spoiler = node.tagName === "SPAN" || node.tagName === "TG-SPOILER";
        const copy = document.createElement(spoiler ? "span" : node.tagName === "TG-EMOJI" ? "span" : node.tagName.toLowerCase());
        if (spoiler && (node.tagName === "TG-SPOILER" || node.classList.contains("tg-spoiler"))) copy.className = "spoiler";
        drawn(node, copy);
        into.append(copy);
      } else drawn(node, into);
    }
  }
}

function preview(form) {
  const tab = form.querySelector("fieldset[data-version]:not([hidden])");
  const fallback = form.querySelector("fieldset[data-version=default]");
  const text = tab.elements.text.value.trim() || tab.elements.photo.value ? tab : fallback;
  const bubble = form.querySelector("#bc-preview");
  const body = bubble.querySelector(".bubble-text");
  body.replaceChildren();
  drawn(new DOMParser().parseFromString(text.elements.text.value.trim(), "text/html").body, body);
  body.hidden = !body.textContent;
  const image = bubble.querySelector(".bubble-img");
  const chosen = text.querySelector(".bc-photo-chosen img");
  image.hidden = !text.elements.photo.value;
  if (!image.hidden) image.src = chosen.src;
  const button = bubble.querySelector("#bc-preview-button");
  const label = text.elements.button_text.value.trim();
  button.hidden = !label;
  button.textContent = `🔗 ${label}`;
}

function wrap(area, tag) {
  const { selectionStart: start, selectionEnd: end, value } = area;
  let open = `<${tag}>`;
  if (tag === "a") open = '<a href="https://">';
  const inner = value.slice(start, end);
  area.value = `${value.slice(0, start)}${open}${inner}</${tag}>${value.slice(end)}`;
  area.focus();
  const at = tag === "a" ? start + open.length - 2 : start + open.length + inner.length;
  area.setSelectionRange(at, at);
  area.dispatchEvent(new Event("input", { bubbles: true }));
}

function filters(form) {
  const query = new URLSearchParams();
  for (const field of form.querySelectorAll("#bc-filters [name]")) {
    if (field.type === "checkbox" ? field.checked : field.value.trim()) query.set(field.name, field.value.trim());
  }
  return query;
}

function versions(form) {
  const out = {};
  for (const set of form.querySelectorAll("fieldset[data-version]")) {
    const { text, photo, button_text: label, button_url: url } = set.elements;
    const version = { text: text.value };
    if (photo.value) version.photo = photo.value;
    if (label.value.trim() || url.value.trim()) version.button = { text: label.value, url: url.value };
    out[set.dataset.version] = version;
  }
  return out;
}

function readPhoto(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = reject;
    reader.readAsDataURL(file);
  });
}

function wireCompose(form, app) {
  const audience = form.querySelector("#audience");
  let timer = null;
  const count = async () => {
    const response = await app.request("GET", `view/console/broadcast/audience?${filters(form)}`, undefined, "text/html");
    audience.classList.toggle("bad", !response.ok);
    if (response.ok) audience.innerHTML = await response.text();
    else audience.textContent = await app.errorText(response);
  };
  form.querySelector("#bc-filters").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(count, AUDIENCE_AFTER);
  });
  for (const tab of form.querySelectorAll("[data-version-tab]")) {
    tab.addEventListener("click", () => {
      for (const other of form.querySelectorAll("[data-version-tab]")) other.setAttribute("aria-selected", String(other === tab));
      for (const set of form.querySelectorAll("fieldset[data-version]")) set.hidden = set.dataset.version !== tab.dataset.versionTab;
      preview(form);
    });
  }
  for (const button of form.querySelectorAll("[data-wrap]")) {
    button.addEventListener("click", () => wrap(button.closest("fieldset").elements.text, button.dataset.wrap));
  }
  form.addEventListener("input", () => preview(form));
  for (const input of form.querySelectorAll("[data-photo-input]")) {
    const set = input.closest("fieldset");
    const chosen = set.querySelector(".bc-photo-chosen");
    input.addEventListener("change", async () => {
      const file = input.files[0];
      input.value = "";
      if (!file) return;
      if (file.size > Number(form.dataset.maxPhoto)) return app.note(form.dataset.tooBig, true);
      const url = await readPhoto(file);
      const result = await app.post("console/broadcast/photo", { data: url.slice(url.indexOf(",") + 1) }, null, { stay: true });
      if (!result) return;
      set.elements.photo.value = result.photo;
      chosen.querySelector("img").src = url;
      chosen.hidden = false;
      preview(form);
    });
    set.querySelector("[data-photo-remove]").addEventListener("click", () => {
      set.elements.photo.value = "";
      chosen.hidden = true;
      preview(form);
    });
  }
  const at = form.elements.send_at;
  for (const radio of form.querySelectorAll("input[name=when]")) {
    radio.addEventListener("change", () => { at.disabled = form.elements.when.value !== "later"; });
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const later = form.elements.when.value === "later";
    const body = { key: form.dataset.key, versions: versions(form), filters: Object.fromEntries(filters(form)) };
    if (later) body.send_at = at.value;
    const holdout = form.elements.holdout.value.trim();
    if (holdout) body.holdout = `${holdout}%`;
    const ask = later ? form.dataset.confirmLater : form.dataset.confirmNow;
    app.confirmThen(ask.replace("{audience}", audience.textContent.trim()), async () => {
      const submit = form.querySelector("[type=submit]");
      submit.disabled = true;
      try {
        const result = await app.post("console/broadcast/create", body, null, { form, stay: true });
        if (result) await app.show(`console/broadcast?id=${result.id}`, { push: false });
      } finally {
        submit.disabled = false;
      }
    });
  });
  preview(form);
}

// A broadcast's progress, asked for every two seconds while its screen is shown; a change of status redraws the
// screen (its buttons change too), and polling stops once it is over.
function wireProgress(box, app) {
  const fields = ["sent", "failed", "blocked", "remaining", "processed", "pace"];
  if (box.dataset.status === "done" || box.dataset.status === "cancelled") return;
  const timer = setInterval(async () => {
    if (!box.isConnected) return clearInterval(timer);
    const response = await app.request("GET", `api/${box.dataset.poll}`);
    if (!response.ok || !box.isConnected) return;
    const now = await response.json();
    if (now.status !== box.dataset.status) {
      clearInterval(timer);
      return app.reload();
    }
    for (const name of fields) box.querySelector(`#bc-${name}`).textContent = now[name];
    box.querySelector("#bc-bar").value = now.processed;
    if (now.status === "done" || now.status === "cancelled") clearInterval(timer);
  }, POLL_EVERY);
}

export function wireBroadcasts(root, app) {
  for (const form of root.querySelectorAll("form[data-compose]")) wireCompose(form, app);
  for (const box of root.querySelectorAll("[data-poll]")) wireProgress(box, app);
}
