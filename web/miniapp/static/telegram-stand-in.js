// A stand-in for Telegram's telegram-web-app.js, for the offline demo and the browser tests only: the page is
// opened in an ordinary browser with the signed initData and theme in the URL's fragment, as Telegram itself
// passes them. Telegram's own controls become plain page elements: the MainButton a bar at the bottom, the
// BackButton a button at the top, the QR scanner and popups small dialogs. `window.TelegramStandIn` lets a test
// "scan" a text and read what the page asked of Telegram.
(() => {
  const params = new URLSearchParams(location.hash.slice(1));
  const initData = params.get("tgWebAppData") || "";
  let themeParams = {};
  try {
    themeParams = JSON.parse(params.get("tgWebAppThemeParams") || "{}");
  } catch {
    themeParams = {};
  }
  const unsafe = {};
  for (const [key, value] of new URLSearchParams(initData)) {
    try {
      unsafe[key] = key === "user" ? JSON.parse(value) : value;
    } catch {
      unsafe[key] = value;
    }
  }
  const standIn = { haptics: [], opened: [], pendingScan: null, ready: false, expanded: false };
  const handlers = {};

  function element(tag, id, text) {
    const el = document.createElement(tag);
    el.id = id;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function mount(el) {
    if (document.body) document.body.append(el);
    else document.addEventListener("DOMContentLoaded", () => document.body.append(el));
  }

  function button(id, style) {
    const el = element("button", id);
    el.type = "button";
    el.hidden = true;
    el.className = "tg-stand-in";
    Object.assign(el.style, style);
    mount(el);
    return el;
  }

  function control(id, style) {
    const el = button(id, style);
    const clicks = [];
    el.addEventListener("click", () => { for (const fn of [...clicks]) fn(); });
    return {
      el,
      clicks,
      get isVisible() { return !el.hidden; },
      get text() { return el.textContent; },
      show() { el.hidden = false; return this; },
      hide() { el.hidden = true; return this; },
      onClick(fn) { clicks.push(fn); return this; },
      offClick(fn) { const i = clicks.indexOf(fn); if (i >= 0) clicks.splice(i, 1); return this; },
    };
  }

  const main = control("tg-main-button", {
    position: "fixed", left: "0", right: "0", bottom: "0", height: "52px", border: "0", zIndex: "1000",
    font: "600 16px system-ui, sans-serif", background: themeParams.button_color || "#2481cc",
    color: themeParams.button_text_color || "#fff",
  });
  const MainButton = Object.assign(main, {
    setText(text) { main.el.textContent = text; return MainButton; },
    setParams(p) { if (p.text) MainButton.setText(p.text); if (p.is_visible) MainButton.show(); return MainButton; },
    enable() { main.el.disabled = false; return MainButton; },
    disable() { main.el.disabled = true; return MainButton; },
    showProgress() { main.el.setAttribute("aria-busy", "true"); return MainButton; },
    hideProgress() { main.el.removeAttribute("aria-busy"); return MainButton; },
  });
  const BackButton = control("tg-back-button", {
    position: "fixed", left: "8px", top: "8px", zIndex: "1000", padding: "4px 10px", borderRadius: "8px",
    border: "0", background: "rgba(127,127,127,.25)", color: "inherit", font: "14px system-ui, sans-serif",
  });
  BackButton.el.textContent = "‹ Back";

  function dialog(id, message, { input = false, ok = "OK", cancel = null }, done) {
    document.getElementById(id)?.remove();
    const box = element("dialog", id);
    box.className = "tg-stand-in";
    const text = element("p", `${id}-text`, message);
    box.append(text);
    const field = input ? element("input", `${id}-input`) : null;
    if (field) box.append(field);
    const yes = element("button", `${id}-ok`, ok);
    box.append(yes);
    yes.addEventListener("click", () => { box.remove(); done(true, field?.value ?? ""); });
    if (cancel) {
      const no = element("button", `${id}-cancel`, cancel);
      box.append(no);
      no.addEventListener("click", () => { box.remove(); done(false, ""); });
    }
    mount(box);
    box.show();
  }

  const WebApp = {
    initData,
    initDataUnsafe: unsafe,
    themeParams,
    colorScheme: params.get("tgWebAppColorScheme") || (themeParams.bg_color && isDark(themeParams.bg_color) ? "dark" : "light"),
    platform: "stand-in",
    version: "8.0",
    viewportHeight: window.innerHeight,
    isExpanded: false,
    MainButton,
    BackButton,
    HapticFeedback: {
      impactOccurred(style) { standIn.haptics.push(`impact:${style}`); return this; },
      notificationOccurred(type) { standIn.haptics.push(`notification:${type}`); return this; },
      selectionChanged() { standIn.haptics.push("selection"); return this; },
    },
    ready() { standIn.ready = true; },
    expand() { standIn.expanded = true; WebApp.isExpanded = true; },
    close() { standIn.closed = true; },
    onEvent(name, fn) { (handlers[name] ||= []).push(fn); },
    offEvent(name, fn) { handlers[name] = (handlers[name] || []).filter((f) => f !== fn); },
    openLink(url) { standIn.opened.push(url); },
    openTelegramLink(url) { standIn.opened.push(url); },
    // An invoice opens Telegram's payment sheet: here it is only recorded; the status says nothing was paid.
    openInvoice(url, callback) { standIn.opened.push(url); callback?.("cancelled"); },
    showAlert(message, callback) { dialog("tg-popup", message, {}, () => callback?.()); },
    showConfirm(message, callback) { dialog("tg-popup", message, { cancel: "Cancel" }, (ok) => callback?.(ok)); },
    showPopup(p, callback) { dialog("tg-popup", p.message, { cancel: "Cancel" }, (ok) => callback?.(ok ? "ok" : null)); },
    showScanQrPopup(p, callback) {
      // The demo's scanner asks for the text a camera would have read.
      standIn.pendingScan = callback;
      dialog("tg-scan", p?.text || "Scan", { input: true, ok: "Scan", cancel: "Cancel" }, (ok, text) => {
        standIn.pendingScan = null;
        if (ok && text) callback(text);
      });
    },
    closeScanQrPopup() { document.getElementById("tg-scan")?.remove(); standIn.pendingScan = null; },
    requestContact(callback) { standIn.contactRequested = true; callback?.(false); },
  };

  function isDark(hex) {
    const n = parseInt(hex.replace("#", ""), 16);
    return ((n >> 16) & 255) * 0.299 + ((n >> 8) & 255) * 0.587 + (n & 255) * 0.114 < 128;
  }

  standIn.scan = (text) => {
    const callback = standIn.pendingScan;
    if (!callback) throw new Error("the page has not opened the scanner");
    standIn.pendingScan = null;
    document.getElementById("tg-scan")?.remove();
    callback(text);
  };
  window.Telegram = { WebApp };
  window.TelegramStandIn = standIn;
})();
