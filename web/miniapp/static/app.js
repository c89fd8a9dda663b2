// The Mini App's page: screens come from the server already rendered in the member's language; this module
// fetches them with Telegram's signed initData, wires their buttons to Telegram's MainButton, BackButton, QR
// scanner and haptics, and posts actions. No framework and no build step.

import { wireBroadcasts } from "./broadcasts.js";

const tg = window.Telegram.WebApp;
const BASE = document.body.dataset.base;
const main = document.getElementById("screen");
const toast = document.getElementById("toast");
const trail = []; // screens to go back to
let current = null;
let mainHandler = null;

function applyTheme() {
  const root = document.documentElement;
  for (const [name, value] of Object.entries(tg.themeParams || {})) {
    root.style.setProperty(`--tg-${name.replaceAll("_", "-")}`, value);
  }
  root.dataset.scheme = tg.colorScheme === "dark" ? "dark" : "light";
}

// A key for one submission: a double tap or a retried request sends it again and the server records once.
function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");
}

function request(method, path, body, accept = "application/json") {
  const headers = { Authorization: `tma ${tg.initData}`, Accept: accept };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  return fetch(BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

async function errorText(response) {
  try {
    return (await response.json()).error.message;
  } catch {
    return `${response.status}`;
  }
}

let toastTimer = null;
function note(text, bad = false) {
  toast.textContent = text;
  toast.classList.toggle("bad", bad);
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.hidden = true; }, 5000);
}
toast.addEventListener("click", () => { toast.hidden = true; });

function hideMainButton() {
  if (mainHandler) tg.MainButton.offClick(mainHandler);
  mainHandler = null;
  tg.MainButton.hide();
}

function showMainButton(text, handler) {
  hideMainButton();
  mainHandler = handler;
  tg.MainButton.setText(text);
  tg.MainButton.onClick(handler);
  tg.MainButton.show();
}

async function show(name, { push = true } = {}) {
  hideMainButton();
  const response = await request("GET", `view/${name}`, undefined, "text/html");
  if (response.status === 401) {
    main.innerHTML = await response.text();
    tg.BackButton.hide();
    return;
  }
  if (!response.ok) {
    note(await errorText(response), true);
    tg.HapticFeedback.notificationOccurred("error");
    return;
  }
  if (push && current !== null && current !== name) trail.push(current);
  current = name;
  main.innerHTML = await response.text();
  const screen = main.querySelector(".screen");
  if (screen?.dataset.lang) document.documentElement.lang = screen.dataset.lang;
  wire(main);
  if (trail.length) tg.BackButton.show();
  else tg.BackButton.hide();
  window.scrollTo(0, 0);
}

function reload() {
  return show(current, { push: false });
}

// A form's refusal is also written under the form, beside what has to change.
function formError(form, text) {
  if (!form) return;
  let shown = form.nextElementSibling?.classList.contains("form-error") ? form.nextElementSibling : null;
  if (!text) return shown?.remove();
  if (!shown) {
    shown = document.createElement("p");
    shown.className = "form-error";
    shown.setAttribute("role", "alert");
    form.after(shown);
  }
  shown.textContent = text;
}

async function post(path, body, then, { form = null, stay = false } = {}) {
  const response = await request("POST", `api/${path}`, body);
  if (response.status === 401) return show(current, { push: false });
  if (!response.ok) {
    const text = await errorText(response);
    note(text, true);
    formError(form, text);
    tg.HapticFeedback.notificationOccurred("error");
    return null;
  }
  const result = await response.json();
  tg.HapticFeedback.notificationOccurred("success");
  formError(form, "");
  if (!stay) await (then ? show(then, { push: false }) : reload());
  note([result.message, result.why].filter(Boolean).join("\n"));
  return result;
}

// The console's invitation: the link is shown once, with Copy and Share, and the screen stays.
function showInvite(root, result) {
  const box = root.querySelector("#invite-made");
  if (!box || !result) return;
  box.querySelector("#invite-link").textContent = result.link;
  const share = box.querySelector("[data-share]");
  share.dataset.share = result.link;
  share.dataset.shareText = result.share_text;
  box.hidden = false;
}

function formBody(form) {
  const body = {};
  for (const field of form.elements) {
    if (!field.name || field.disabled) continue;
    if ((field.type === "radio" || field.type === "checkbox") && !field.checked) continue;
    if (field.value === "" && field.type !== "hidden") continue;
    body[field.name] = "number" in field.dataset ? Number(field.value) : field.value;
  }
  if (form.dataset.key) body.key = form.dataset.key;
  return body;
}

function confirmThen(text, action) {
  tg.showConfirm(text, (ok) => { if (ok) action(); });
}

function scanned(kind, text) {
  tg.HapticFeedback.impactOccurred("medium");
  if (kind === "member") show(`till/member?ref=${encodeURIComponent(text)}`);
  else post("till/coupons", { code: text });
  return true; // closes the scanner
}

function localDate(value, lang) {
  const [y, m, d] = value.split("-").map(Number);
  return new Intl.DateTimeFormat(lang, { year: "numeric", month: "long", day: "numeric", timeZone: "UTC" })
    .format(new Date(Date.UTC(y, m - 1, d)));
}

function wire(root) {
  for (const el of root.querySelectorAll("[data-go]")) {
    el.addEventListener("click", () => show(el.dataset.go));
  }
  for (const form of root.querySelectorAll("form[data-post]")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const send = () => {
        const button = form.querySelector("[type=submit]");
        if (button) button.disabled = true;
        const invite = "invite" in form.dataset;
        post(form.dataset.post, formBody(form), form.dataset.then, { form, stay: invite })
          .then((result) => { if (invite) showInvite(root, result); })
          .finally(() => { if (button) button.disabled = false; });
      };
      if (form.dataset.confirm) {
        const date = form.elements.date?.value;
        confirmThen(form.dataset.confirm.replace("{date}", date ? localDate(date, document.documentElement.lang) : ""), send);
      } else send();
    });
  }
  // The form's main action on Telegram's MainButton, always in reach below the keypad.
  for (const form of root.querySelectorAll("form[data-main]")) {
    showMainButton(form.dataset.main, () => form.requestSubmit());
  }
  for (const form of root.querySelectorAll("form[data-lookup]")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      show(`till/member?ref=${encodeURIComponent(form.elements.ref.value.trim())}`);
    });
  }
  for (const form of root.querySelectorAll("form[data-search]")) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      show(`${form.dataset.search}?${new URLSearchParams({ q: form.elements.q.value.trim() })}`);
    });
  }
  for (const el of root.querySelectorAll("[data-copy]")) {
    el.addEventListener("click", async () => {
      const text = root.querySelector(el.dataset.copy)?.textContent || "";
      try {
        await navigator.clipboard.writeText(text);
        note(el.dataset.copied);
      } catch {
        getSelection().selectAllChildren(root.querySelector(el.dataset.copy)); // copy it by hand
      }
    });
  }
  for (const el of root.querySelectorAll("[data-scan]")) {
    el.addEventListener("click", () => tg.showScanQrPopup({ text: el.dataset.scanText }, (text) => scanned(el.dataset.scan, text)));
  }
  for (const el of root.querySelectorAll("[data-redeem]")) {
    el.addEventListener("click", () => {
      tg.HapticFeedback.selectionChanged();
      const key = newKey(); // one key per confirmation: tapping the MainButton twice redeems once
      showMainButton(el.dataset.confirm, () => {
        tg.MainButton.showProgress();
        post("rewards/redeem", { reward_id: Number(el.dataset.redeem), key }).finally(() => tg.MainButton.hideProgress());
      });
    });
  }
  for (const el of root.querySelectorAll("[data-confirm-post]")) {
    el.addEventListener("click", () => {
      const body = el.dataset.purchase ? { purchase_id: Number(el.dataset.purchase), key: newKey() } : { confirm: true };
      confirmThen(el.dataset.confirm, () => post(el.dataset.confirmPost, body, el.dataset.then));
    });
  }
  for (const el of root.querySelectorAll("[data-share]")) {
    el.addEventListener("click", () => {
      const query = new URLSearchParams({ url: el.dataset.share, text: el.dataset.shareText });
      tg.openTelegramLink(`https://t.me/share/url?${query}`);
    });
  }
  for (const el of root.querySelectorAll("[data-contact]")) {
    el.addEventListener("click", () => tg.requestContact((shared) => { if (shared) setTimeout(reload, 1500); }));
  }
  for (const el of root.querySelectorAll("[data-download]")) {
    el.addEventListener("click", async () => {
      const response = await request("GET", el.dataset.download);
      if (!response.ok) return note(await errorText(response), true);
      const link = document.createElement("a");
      link.href = URL.createObjectURL(await response.blob());
      link.download = "my-data.json";
      link.click();
      URL.revokeObjectURL(link.href);
    });
  }
  for (const el of root.querySelectorAll("[data-favourite]")) {
    el.addEventListener("change", () => post("profile/favourite", { key: el.dataset.favourite, chosen: el.checked }));
  }
  for (const el of root.querySelectorAll("[data-language]")) {
    el.addEventListener("click", () => post("settings", { language: el.dataset.language }));
  }
  for (const el of root.querySelectorAll("[data-vip-buy]")) {
    // The server makes the invoice link (a subscription's, if so); Telegram's own sheet takes the Stars.
    el.addEventListener("click", async () => {
      const result = await post("vip/link", {}, null, { stay: true });
      if (result?.link) tg.openInvoice(result.link, (status) => status === "paid" && setTimeout(reload, 1500));
    });
  }
  for (const el of root.querySelectorAll("[data-renewal]")) {
    el.addEventListener("click", () => post("vip/renewal", { renew: el.dataset.renewal === "true" }));
  }
  for (const el of root.querySelectorAll("[data-promotions]")) {
    el.addEventListener("change", () => post("settings", { promotions: el.checked }));
  }
  for (const pad of root.querySelectorAll("[data-keypad]")) {
    const input = root.querySelector(`#${pad.dataset.keypad}`);
    pad.addEventListener("click", (event) => {
      const key = event.target.closest("[data-digit]")?.dataset.digit;
      if (!key) return;
      tg.HapticFeedback.selectionChanged();
      input.value = key === "⌫" ? input.value.slice(0, -1) : input.value + key;
    });
  }
  for (const more of root.querySelectorAll("[data-more]")) watchMore(more);
  // The console's program editor has a module of its own, loaded when one of its screens is shown.
  if (root.querySelector("[data-editor-screen], [data-save-text], [data-load-into]")) {
    import("./editor.js").then((editor) => editor.wire(root, { request, note, show, errorText }));
  }
  if (root.querySelector("[data-dashboard]")) {
    import("./dashboard.js").then(({ wireDashboard }) => wireDashboard(root, { tg, base: BASE, request, show, note, errorText }));
  }
  wireBroadcasts(root, { request, errorText, post, note, show, reload, confirmThen });
}

// History is paged as you scroll: the next page's rows are appended when its marker comes into view.
function watchMore(more) {
  new IntersectionObserver(async (seen, observer) => {
    if (!seen.some((entry) => entry.isIntersecting)) return;
    observer.disconnect();
    const response = await request("GET", `view/${more.dataset.more}`, undefined, "text/html");
    if (!response.ok) return;
    const page = document.createElement("template");
    page.innerHTML = await response.text();
    main.querySelector("#history-rows").append(...page.content.querySelectorAll("#history-rows > li"));
    const next = page.content.querySelector("[data-more]");
    if (next) {
      more.replaceWith(next);
      watchMore(next);
    } else more.remove();
  }).observe(more);
}

tg.BackButton.onClick(() => {
  const previous = trail.pop();
  if (previous) show(previous, { push: false });
});
tg.onEvent("themeChanged", applyTheme);
applyTheme();
tg.ready();
tg.expand();
show(new URLSearchParams(location.search).get("screen") || "start");
