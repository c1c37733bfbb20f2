// The only script of the review pages (served from 'self': the CSP allows no inline script).
// Every page: times in the browser's own zone. Worklist: the counts refresh every 30 s; j/k move
// between rows, Enter opens one. Study page, keyboard-first but only when the study has focus
// (the page itself, a knee card or one of its grade buttons — never a link, a button or a text
// field): 0-4 set the grade of the current knee and move to the next, N marks it not gradable
// (and focuses the reason; Enter there comes back), P marks a knee the AI did not grade as not
// present, arrows move between knees and never change a value, Enter signs (Ctrl+Enter from
// anywhere in the form). The report text follows the grades until the radiologist edits it.
(() => {
  for (const t of document.querySelectorAll("time.local")) {
    const d = new Date(t.dateTime);
    if (Number.isNaN(d.getTime())) continue;
    t.title = `${t.dateTime} (UTC)`;
    t.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
})();

(() => {
  const counts = document.querySelectorAll("[data-count]");
  if (counts.length === 0) return;
  setInterval(async () => {
    const r = await fetch(`/counts.json${location.search}`, {
      headers: { accept: "application/json" },
    });
    if (!r.ok) return;
    const n = await r.json();
    for (const el of counts) el.textContent = String(n[el.dataset.count] ?? el.textContent);
  }, 30_000);
})();

(() => {
  const rows = [...document.querySelectorAll("table.worklist tbody tr[data-href]")];
  if (rows.length === 0) return;
  let current = -1;
  const show = () => {
    rows.forEach((r, i) => {
      r.classList.toggle("current", i === current);
    });
    rows[current]?.scrollIntoView({ block: "nearest" });
  };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const t = event.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement) return;
    if (event.key === "j") {
      current = Math.min(rows.length - 1, current + 1);
      show();
    } else if (event.key === "k") {
      current = Math.max(0, current - 1);
      show();
    } else if (event.key === "Enter" && current >= 0 && t === document.body) {
      // Only with nothing focused: Enter on a link, tab or button does what that one does.
      event.preventDefault();
      location.assign(rows[current].dataset.href);
    }
  });
})();

(() => {
  const form = document.getElementById("sign-form");
  if (!form) return;
  const knees = [...form.querySelectorAll("section.knee")];
  if (knees.length === 0) return;
  const editable = form.dataset.editable === "1";
  const findings = document.getElementById("findings");
  const impression = document.getElementById("impression");
  // Each text field follows the grades until the radiologist writes in it.
  const follows = new Set(
    (form.dataset.follows ?? "")
      .split(" ")
      .filter(Boolean)
      .map((id) => document.getElementById(id)),
  );
  let current = 0;
  let signing = false;
  // Opened by "sign & next": an Enter meant for the previous study (pressed twice, or held) must
  // not sign this one, so here Enter signs only after the radiologist has acted on this page (any
  // other key, or a click).
  let armed = !new URLSearchParams(location.search).has("previous");
  const arm = () => {
    armed = true;
  };
  document.addEventListener("pointerdown", arm);

  const show = () => {
    knees.forEach((k, i) => {
      k.classList.toggle("current", i === current);
    });
  };
  const moveTo = (i) => {
    current = Math.max(0, Math.min(knees.length - 1, i));
    show();
    knees[current].focus();
  };
  knees.forEach((k, i) => {
    k.addEventListener("focusin", () => {
      current = i;
      show();
    });
    k.addEventListener("click", () => {
      current = i;
      show();
    });
  });
  show();

  // --- what you see is what you sign -------------------------------------------------------
  const choiceWords = (value) =>
    value === "ng"
      ? "not gradable"
      : value === "np"
        ? "not present"
        : value === undefined
          ? "decision required"
          : `KL${value}`;
  const updateSummary = () => {
    knees.forEach((k, i) => {
      const chosen = k.querySelector("input[type=radio]:checked")?.value;
      const item = document.querySelector(`[data-summary="${i}"]`);
      const ai = k.dataset.ai;
      if (ai !== undefined) {
        const you = k.querySelector("[data-you]");
        const changed = chosen !== ai;
        if (you) you.textContent = changed ? `you: ${choiceWords(chosen)} / AI: KL${ai}` : "";
        if (item) {
          item.querySelector("b").textContent = choiceWords(chosen);
          const note = item.querySelector("span");
          note.textContent = changed ? `(AI: KL${ai})` : "(AI agrees)";
          note.className = changed ? "changed" : "hint";
        }
      } else if (item) {
        const b = item.querySelector("b");
        b.textContent = choiceWords(chosen);
        b.classList.toggle("required", chosen === undefined);
      }
      // The knee's label on the radiograph (study.ts regionLabel).
      const label = document.querySelector(`svg.regions [data-region="${k.dataset.knee}"] text`);
      if (label && ai !== undefined) {
        const side = label.parentElement.dataset.side;
        const you = chosen === "ng" ? "n/g" : `KL${chosen}`;
        label.textContent =
          chosen === ai || chosen === undefined
            ? `${side} · AI KL${ai}`
            : `${side} · you ${you} · AI KL${ai}`;
      }
    });
  };
  let seq = 0;
  let pending = Promise.resolve();
  const refresh = () => {
    updateSummary();
    if (follows.size === 0 || !form.dataset.text) return pending;
    const n = ++seq;
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(form)) {
      if (/^(knee_|reason_|missing_)/.test(k)) params.append(k, String(v));
    }
    pending = fetch(`${form.dataset.text}?${params}`, { headers: { accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : null))
      .then((t) => {
        if (t && n === seq) {
          if (follows.has(findings)) findings.value = t.findings;
          if (follows.has(impression)) impression.value = t.impression;
        }
      })
      .catch(() => {});
    return pending;
  };
  form.addEventListener("change", () => {
    refresh();
  });
  let typingTimer;
  for (const reason of form.querySelectorAll("input.reason")) {
    reason.addEventListener("input", () => {
      clearTimeout(typingTimer);
      typingTimer = setTimeout(refresh, 150);
    });
  }
  const note = (text) => {
    const el = document.getElementById("text-note");
    if (el) el.textContent = text;
  };
  for (const area of [findings, impression]) {
    area?.addEventListener("input", () => {
      follows.delete(area);
      note("Your own text: it is signed exactly as written — keep it in line with your grades.");
    });
  }
  document.getElementById("regenerate")?.addEventListener("click", () => {
    follows.add(findings);
    follows.add(impression);
    refresh();
    note("The text follows your grades again.");
  });

  const sign = async () => {
    const button = document.getElementById("sign");
    if (!editable || !button || button.disabled || signing) return;
    if (!armed) return;
    signing = true;
    clearTimeout(typingTimer);
    await refresh();
    form.requestSubmit(button);
  };
  // A second submission of the same page (a second Enter) would only be refused: none is sent.
  form.addEventListener("submit", (event) => {
    if (form.dataset.submitted === "1") event.preventDefault();
    form.dataset.submitted = "1";
  });

  // --- keyboard ----------------------------------------------------------------------------
  const isText = (el) =>
    el instanceof HTMLTextAreaElement ||
    (el instanceof HTMLInputElement && el.type !== "radio" && el.type !== "checkbox");
  /** Focus on the study: the page itself, a knee card, or a grade button inside one. */
  const onStudy = (el) =>
    el === document.body ||
    el === document.documentElement ||
    el?.id === "study" ||
    (el instanceof HTMLElement && el.matches("section.knee")) ||
    (el instanceof HTMLInputElement && el.type === "radio" && el.closest("section.knee") !== null);
  const choose = (knee, value) => {
    const radio = knee.querySelector(`input[type=radio][value="${value}"]`);
    // A radio of a disabled fieldset (a signed study before "Amend") is :disabled, not .disabled.
    if (!editable || !radio || radio.matches(":disabled")) return null;
    radio.checked = true;
    refresh();
    return radio;
  };

  document.addEventListener("keydown", (event) => {
    const t = event.target;
    if (event.altKey || event.metaKey) return;
    if (event.key !== "Enter" && !["Control", "Shift", "Alt", "Meta"].includes(event.key)) arm();
    if (event.key === "Enter" && event.ctrlKey) {
      if (onStudy(t) || form.contains(t)) {
        event.preventDefault();
        if (!event.repeat) sign();
      }
      return;
    }
    if (event.ctrlKey) return;
    // Enter in a reason field ends the reason (no implicit form submission): back to its knee.
    if (event.key === "Enter" && t instanceof HTMLInputElement && isText(t) && form.contains(t)) {
      event.preventDefault();
      const knee = t.closest("section.knee");
      if (knee) moveTo(knees.indexOf(knee));
      return;
    }
    if (!onStudy(t) || isText(t)) return;
    const knee = knees[current];
    if (/^[0-4]$/.test(event.key)) {
      event.preventDefault();
      if (!choose(knee, event.key)) return;
      if (current < knees.length - 1) moveTo(current + 1);
    } else if (event.key === "n" || event.key === "N") {
      event.preventDefault();
      if (!choose(knee, "ng")) return;
      knee.querySelector("input.reason")?.focus();
    } else if (event.key === "p" || event.key === "P") {
      event.preventDefault();
      if (!choose(knee, "np")) return;
      if (current < knees.length - 1) moveTo(current + 1);
    } else if (event.key === "ArrowDown" || event.key === "ArrowRight") {
      // Never the browser's default: on a focused radio it would change the grade.
      event.preventDefault();
      moveTo(current + 1);
    } else if (event.key === "ArrowUp" || event.key === "ArrowLeft") {
      event.preventDefault();
      moveTo(current - 1);
    } else if (event.key === "Enter") {
      event.preventDefault();
      if (!event.repeat) sign();
    }
  });
})();

// Image tools: zoom (full resolution, drag to pan), window/level on the original pixels (the server
// renders the radiograph through the window asked for), and each knee's region enlarged.
(() => {
  for (const frame of document.querySelectorAll("figure.viewer-frame")) {
    const viewer = frame.querySelector("[data-viewer]");
    const img = viewer.querySelector("img");
    let zoom = 0; // 0: fitted to the column; otherwise the factor of the full resolution
    let voi = null;
    const source = () => {
      const p = new URLSearchParams();
      if (zoom > 0) p.set("full", "1");
      if (voi) {
        p.set("wc", String(voi.center));
        p.set("ww", String(voi.width));
      }
      const q = p.toString();
      return q ? `${img.dataset.base}?${q}` : img.dataset.base;
    };
    // The knee regions (an SVG in the image's own pixels) lie exactly over the picture, at any zoom.
    const regions = viewer.querySelector("svg.regions");
    const place = () => {
      if (!regions) return;
      regions.style.left = `${img.offsetLeft}px`;
      regions.style.top = `${img.offsetTop}px`;
      regions.style.width = `${img.offsetWidth}px`;
      regions.style.height = `${img.offsetHeight}px`;
    };
    if (regions) {
      const watch = new ResizeObserver(place);
      watch.observe(img);
      watch.observe(viewer);
      img.addEventListener("load", place);
      place();
    }
    const render = () => {
      const src = source();
      if (img.getAttribute("src") !== src) img.src = src;
      viewer.classList.toggle("zoomed", zoom > 0);
      const size = () => {
        img.style.width = zoom > 0 ? `${img.naturalWidth * zoom}px` : "";
        img.style.maxWidth = zoom > 0 ? "none" : "";
        img.style.maxHeight = zoom > 0 ? "none" : "";
      };
      if (img.complete) size();
      img.addEventListener("load", size, { once: true });
    };
    frame.addEventListener("click", (event) => {
      const b = event.target.closest("button");
      if (!b) return;
      if (b.dataset.zoom === "in") zoom = zoom === 0 ? 0.5 : Math.min(4, zoom * 2);
      else if (b.dataset.zoom === "out") zoom = zoom <= 0.5 ? 0 : zoom / 2;
      else if (b.dataset.zoom === "fit") zoom = 0;
      else if (b.dataset.window === "apply") {
        const width = Number(frame.querySelector("input.ww").value);
        const center = Number(frame.querySelector("input.wc").value);
        if (!(width > 0) || !Number.isFinite(center)) return;
        voi = { center, width };
      } else if (b.dataset.window === "reset") voi = null;
      render();
    });
    let drag = null;
    viewer.addEventListener("pointerdown", (e) => {
      if (zoom === 0) return;
      drag = { x: e.clientX, y: e.clientY, left: viewer.scrollLeft, top: viewer.scrollTop };
      viewer.setPointerCapture(e.pointerId);
      e.preventDefault();
    });
    viewer.addEventListener("pointermove", (e) => {
      if (!drag) return;
      viewer.scrollLeft = drag.left - (e.clientX - drag.x);
      viewer.scrollTop = drag.top - (e.clientY - drag.y);
    });
    viewer.addEventListener("pointerup", () => {
      drag = null;
    });
  }
  for (const b of document.querySelectorAll("button[data-heat-toggle]")) {
    const img = b.closest("figure").querySelector("img");
    b.addEventListener("click", () => {
      const on = img.getAttribute("src") === img.dataset.heat;
      img.src = on ? img.dataset.plain : img.dataset.heat;
      b.textContent = on ? "heat map on" : "heat map off";
    });
  }
  for (const b of document.querySelectorAll("button[data-enlarge]")) {
    const figure = document.getElementById(`region-${b.dataset.enlarge}`);
    b.addEventListener("click", () => {
      const img = figure.querySelector("img");
      if (!img.getAttribute("src")) img.src = img.dataset.src;
      figure.hidden = !figure.hidden;
    });
    figure.addEventListener("click", () => {
      figure.hidden = true;
    });
  }
})();
