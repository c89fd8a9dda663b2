// The console's dashboard: the charts come drawn from the server as SVG; this adds a tooltip with the value of
// the point, bar or cell under a finger or the pointer, series toggles, the period chooser and the downloads.

export function wireDashboard(root, { tg, base, request, show, note, errorText }) {
  const board = root.querySelector("[data-dashboard]");
  if (!board) return;

  for (const figure of board.querySelectorAll(".chart")) {
    const tip = figure.querySelector(".chart-tip");
    let pinned = null;
    const point = (mark) => {
      for (const other of figure.querySelectorAll(".mark.on")) other.classList.remove("on");
      mark.classList.add("on");
      tip.textContent = mark.dataset.tip;
      tip.hidden = false;
      // Above the mark, kept inside the chart.
      const box = figure.getBoundingClientRect();
      const at = mark.getBoundingClientRect();
      const left = Math.min(Math.max(at.left + at.width / 2 - box.left - tip.offsetWidth / 2, 0), box.width - tip.offsetWidth);
      tip.style.left = `${left}px`;
      tip.style.top = `${Math.max(at.top - box.top - tip.offsetHeight - 6, 0)}px`;
    };
    const hide = () => {
      if (pinned) return point(pinned);
      tip.hidden = true;
      for (const other of figure.querySelectorAll(".mark.on")) other.classList.remove("on");
    };
    for (const mark of figure.querySelectorAll(".mark")) {
      mark.addEventListener("pointerenter", () => point(mark));
      mark.addEventListener("pointerleave", hide);
      mark.addEventListener("focus", () => point(mark));
      mark.addEventListener("blur", hide);
      mark.addEventListener("click", (event) => { // a tap keeps the value shown until another tap
        event.stopPropagation();
        pinned = pinned === mark ? null : mark;
        tg.HapticFeedback?.selectionChanged();
        if (pinned) point(mark);
        else hide();
      });
    }
    figure.addEventListener("click", () => { pinned = null; hide(); });
    for (const toggle of figure.querySelectorAll(".series-toggle")) {
      toggle.addEventListener("click", () => {
        const on = toggle.getAttribute("aria-pressed") !== "true";
        toggle.setAttribute("aria-pressed", String(on));
        for (const el of figure.querySelectorAll(`svg [data-series="${toggle.dataset.series}"]`)) el.classList.toggle("off", !on);
        pinned = null;
        hide();
      });
    }
  }

  for (const chip of board.querySelectorAll("#periods [data-period]")) {
    chip.addEventListener("click", () => {
      if (chip.getAttribute("aria-checked") === "true") return;
      tg.HapticFeedback?.selectionChanged();
      const store = board.dataset.store ? `&store=${encodeURIComponent(board.dataset.store)}` : "";
      show(`console/dashboard?period=${encodeURIComponent(chip.dataset.period)}${store}`, { push: false });
    });
  }

  for (const button of board.querySelectorAll("[data-export]")) {
    button.addEventListener("click", async () => {
      const { export: kind, period, fileName } = button.dataset;
      const query = new URLSearchParams({ period });
      button.disabled = true;
      try {
        // In Telegram (7.x clients and later), its own download sheet: it fetches a link signed for five minutes.
        if (typeof tg.downloadFile === "function" && tg.isVersionAtLeast?.("8.0")) {
          const response = await request("GET", `api/console/export/${kind}/link?${query}`);
          if (!response.ok) return note(await errorText(response), true);
          const link = await response.json();
          tg.downloadFile({ url: new URL(base + link.url, location.href).href, file_name: link.file_name });
          return;
        }
        // Elsewhere: fetched with the signed initData and saved from memory.
        const response = await request("GET", `api/console/export/${kind}.csv?${query}`, undefined, "text/csv");
        if (!response.ok) return note(await errorText(response), true);
        const link = document.createElement("a");
        link.href = URL.createObjectURL(await response.blob());
        link.download = fileName;
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(link.href), 1000);
      } finally {
        button.disabled = false;
      }
    });
  }
  board.dataset.wired = "true"; // this module arrives after the page: tests wait for it
}
