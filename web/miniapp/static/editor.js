// The console's program editor: reads a section's form into the program's shape, has the server check it as the
// admin types (the program's own models say what is wrong, next to the field), previews a sample purchase now
// and under the edit, and saves it as a new revision. Loaded by app.js when an editor screen is shown.

const tg = window.Telegram.WebApp;
const CHECK_AFTER_MS = 400;

export function wire(root, app) {
  const form = root.querySelector("form[data-editor]");
  if (form) editSection(root, form, app);
  for (const button of root.querySelectorAll("[data-save-text]")) {
    button.addEventListener("click", () => {
      const text = root.querySelector(button.dataset.saveText)?.textContent || "";
      const link = document.createElement("a");
      link.href = URL.createObjectURL(new Blob([text], { type: "application/toml" }));
      link.download = button.dataset.filename;
      link.click();
      URL.revokeObjectURL(link.href);
    });
  }
  for (const input of root.querySelectorAll("[data-load-into]")) {
    input.addEventListener("change", async () => {
      const file = input.files?.[0];
      if (file) root.querySelector(input.dataset.loadInto).value = await file.text();
    });
  }
}

function editSection(root, form, app) {
  const section = form.dataset.section;
  // Where the server's problem keys start: "earn.points_per_unit" for an object section, "rewards.0.cost" for a
  // list (its one field is the list), "name" for the general values.
  const prefix = form.dataset.shape === "object" && section !== "general" ? `${section}.` : "";
  const status = root.querySelector("#editor-status");
  let timer = null;
  let latest = 0; // answers to older checks are dropped

  const draft = () => {
    const value = collect(form, "", prefix);
    return form.dataset.shape === "list" ? value[section] || [] : value;
  };

  async function check() {
    const asked = ++latest;
    const response = await app.request("POST", "api/console/program/check", { section, value: draft() });
    if (asked !== latest) return;
    if (!response.ok) {
      status.textContent = await app.errorText(response);
      return;
    }
    const result = await response.json();
    showProblems(form, result.fields);
    status.textContent = result.message;
    status.classList.toggle("bad", !result.ok);
    if (result.ok && sample.elements.amount.value.trim()) preview();
    else if (!result.ok && !root.querySelector("#preview-result").hidden) {
      // A comparison with a draft that no longer stands would mislead.
      root.querySelector("#preview-draft").textContent = "—";
      const message = root.querySelector("#preview-message");
      message.textContent = result.message;
      message.classList.add("bad");
    }
  }

  const later = () => {
    clearTimeout(timer);
    timer = setTimeout(check, CHECK_AFTER_MS);
  };
  form.addEventListener("input", (event) => {
    retitle(event.target);
    later();
  });
  form.addEventListener("change", later);
  form.addEventListener("click", (event) => {
    const add = event.target.closest("[data-add-row]");
    if (add) {
      const list = add.parentElement.querySelector(":scope > .row-list");
      list.append(add.parentElement.querySelector(":scope > template").content.cloneNode(true));
      list.lastElementChild.querySelector("input, select, textarea")?.focus();
      tg.HapticFeedback.selectionChanged();
      later();
    }
    const remove = event.target.closest("[data-remove-row]");
    if (remove) {
      remove.closest("[data-row]").remove();
      tg.HapticFeedback.selectionChanged();
      later();
    }
  });

  const sample = root.querySelector("#sample");
  async function preview() {
    const s = sample.elements;
    const body = {
      section,
      value: draft(),
      sample: {
        amount: s.amount.value.trim(),
        items: Number(s.items.value || 1),
        category: s.category.value.trim() || null,
        tier: s.tier.value || null,
        store: s.store ? s.store.value || null : null,
        vip: s.vip.checked,
        at: s.at.value || null,
      },
    };
    const response = await app.request("POST", "api/console/program/preview", body);
    const message = root.querySelector("#preview-message");
    if (!response.ok) {
      message.textContent = await app.errorText(response);
      message.classList.add("bad");
      return;
    }
    const result = await response.json();
    root.querySelector("#preview-now").textContent = result.now.text;
    root.querySelector("#preview-draft").textContent = result.draft ? result.draft.text : "—";
    root.querySelector("#preview-result").hidden = false;
    message.textContent = result.message;
    message.classList.toggle("bad", !result.draft);
  }
  sample.addEventListener("submit", (event) => {
    event.preventDefault();
    preview();
  });

  let saving = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (saving) return; // a double tap saves once; the second would be refused as stale anyway
    saving = true;
    clearTimeout(timer);
    const save = root.querySelector("#editor-save");
    save.disabled = true;
    try {
      const body = {
        section,
        value: draft(),
        based_on: Number(form.dataset.revision),
        note: form.querySelector("[data-note]").value.trim() || null,
      };
      const response = await app.request("POST", "api/console/program/save", body);
      if (response.status === 401) return app.show(`console/program?section=${section}`, { push: false });
      const result = await response.json().catch(() => ({}));
      if (!response.ok) {
        const error = result.error || {};
        showProblems(form, error.fields || { "": error.message || `${response.status}` });
        app.note(error.message || `${response.status}`, true);
        tg.HapticFeedback.notificationOccurred("error");
        return;
      }
      tg.HapticFeedback.notificationOccurred("success");
      await app.show(`console/program?section=${section}`, { push: false });
      app.note(result.message);
    } finally {
      saving = false;
      save.disabled = false;
    }
  });

  // This module arrives after the page: what was typed before it did is checked now.
  if ([...form.elements].some((el) => "defaultValue" in el && el.value !== el.defaultValue)) later();
  form.dataset.wired = "true";
}

// ------------------------------------------------------------------------------------------------ the form

function fieldsOf(container) {
  return [...container.querySelectorAll("[data-field]")].filter(
    (el) => el.parentElement.closest("[data-field], [data-row], form") === container,
  );
}

// The form's values in the program's shape; every field is tagged with its place (data-path) for the problems.
function collect(container, path, prefix) {
  const value = {};
  for (const el of fieldsOf(container)) {
    const where = path ? `${path}.${el.dataset.field}` : el.dataset.field;
    el.dataset.path = prefix + where;
    const one = valueOf(el, where, prefix);
    if (one !== undefined) value[el.dataset.field] = one;
  }
  return value;
}

function valueOf(el, where, prefix) {
  const kind = el.dataset.kind;
  if (kind === "group") {
    const value = collect(el, where, prefix);
    return Object.keys(value).length ? value : undefined;
  }
  if (kind === "rows") {
    const rows = [...el.querySelector(":scope > .row-list").children];
    return rows.map((row, index) => {
      row.dataset.path = `${prefix}${where}.${index}`;
      return collect(row, `${where}.${index}`, prefix);
    });
  }
  if (kind === "bool") {
    const checked = el.querySelector("input").checked;
    // Left as it was by default, the key stays unwritten: a later version's better default reaches it.
    return "set" in el.dataset || checked !== (el.dataset.default === "true") ? checked : undefined;
  }
  if (kind === "days") {
    const days = [...el.querySelectorAll("input:checked")].map((input) => input.value);
    return days.length ? days : undefined;
  }
  const text = el.querySelector("input, select, textarea").value.trim();
  if (kind === "words") {
    const words = text.split(/[\s,，、]+/).filter(Boolean);
    return words.length ? words : undefined;
  }
  return text === "" ? undefined : text;
}

// A problem goes next to its field, else next to the nearest row or group it is in, else above the form.
function showProblems(form, problems) {
  for (const shown of form.querySelectorAll("[data-error]")) {
    shown.hidden = true;
    shown.textContent = "";
  }
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
  for (const [path, message] of Object.entries(problems || {})) {
    let place = null;
    for (let at = path; at && !place; at = at.split(".").slice(0, -1).join(".")) {
      place = form.querySelector(`[data-path="${CSS.escape(at)}"]`);
    }
    const target = place || form;
    const shown = target.querySelector(":scope > [data-error]");
    const named = path ? `${path}: ${message}` : message; // the key, as the program file and the server name it
    shown.textContent = shown.textContent ? `${shown.textContent}\n${named}` : named;
    shown.hidden = false;
    if (place) {
      place.querySelector(":scope input, :scope select, :scope textarea")?.setAttribute("aria-invalid", "true");
      for (let row = place.closest("details"); row; row = row.parentElement.closest("details")) row.open = true;
    }
  }
}

// A row's summary line follows its first text field (a reward's key, a promotion's name).
function retitle(input) {
  const row = input.closest?.("[data-row]");
  if (!row) return;
  const first = fieldsOf(row).find((el) => el.dataset.kind === "text");
  const title = row.querySelector(":scope > summary [data-row-title]");
  if (first && title && first.contains(input)) title.textContent = input.value || "…";
}
