// The only script of the review pages (served from 'self': the CSP allows no inline script).
// Every page: times in the browser's own zone. Worklist: the counts refresh every 30 s; j/k move
// between rows, Enter opens one. Study page, keyboard-first but only when the study has focus
// (the page itself, a knee card or one of its grade buttons — never a link, a button or a text
// field): 0-4 set the grade of the current knee and move to the next, N marks it not gradable
// (and focuses the reason; Enter there comes back), P marks a knee the AI did not grade as not
// present, arrows move between knees and never change a value, Enter signs (Ctrl+Enter from
// anywhere in the form). The report text follows the grades until the radiologist edits it.
// One function per concern (globals of the page: no other script runs there); the calls at the
// end wire the page.

function localTimes() {
  for (const t of document.querySelectorAll("time.local")) {
    const d = new Date(t.dateTime);
    if (Number.isNaN(d.getTime())) continue;
    t.title = `${t.dateTime} (UTC)`;
    t.textContent = d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
}

function liveCounts() {
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
}

function worklistKeyboard() {
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
}

// --- study page: the state its parts share -------------------------------------------------
function studyPage() {
  const form = document.getElementById("sign-form");
  if (!form) return;
  const knees = [...form.querySelectorAll("section.knee")];
  if (knees.length === 0) return;
  const study = {
    form,
    knees,
    editable: form.dataset.editable === "1",
    current: 0,
    // Opened by "sign & next": an Enter meant for the previous study (pressed twice, or held)
    // must not sign this one, so here Enter signs only after the radiologist has acted on this
    // page (any other key, or a click).
    armed: !new URLSearchParams(location.search).has("previous"),
  };
  document.addEventListener("pointerdown", () => {
    study.armed = true;
  });
  followKneeFocus(study);
  const text = reportText(study);
  const sign = signOnce(study, text);
  studyKeyboard(study, sign, text.refresh);
}

function showCurrentKnee(study) {
  study.knees.forEach((k, i) => {
    k.classList.toggle("current", i === study.current);
  });
}

function moveToKnee(study, i) {
  study.current = Math.max(0, Math.min(study.knees.length - 1, i));
  showCurrentKnee(study);
  study.knees[study.current].focus();
}

function followKneeFocus(study) {
  study.knees.forEach((k, i) => {
    const select = () => {
      study.current = i;
      showCurrentKnee(study);
    };
    k.addEventListener("focusin", select);
    k.addEventListener("click", select);
  });
  showCurrentKnee(study);
}

// --- what you see is what you sign ---------------------------------------------------------
function choiceWords(value) {
  return value === "ng"
    ? "not gradable"
    : value === "np"
      ? "not present"
      : value === undefined
        ? "decision required"
        : `KL${value}`;
}

function updateSummary(knees) {
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
    updateRegionLabel(k, chosen, ai);
  });
}

/** The knee's label on the radiograph (study.ts regionLabel). */
function updateRegionLabel(knee, chosen, ai) {
  const label = document.querySelector(`svg.regions [data-region="${knee.dataset.knee}"] text`);
  if (!label || ai === undefined) return;
  const side = label.parentElement.dataset.side;
  const you = chosen === "ng" ? "n/g" : `KL${chosen}`;
  label.textContent =
    chosen === ai || chosen === undefined
      ? `${side} · AI KL${ai}`
      : `${side} · you ${you} · AI KL${ai}`;
}

/** The report text for the grades, reasons and missing knees now in the form (null if refused). */
function fetchReportText(form) {
  const params = new URLSearchParams();
  for (const [k, v] of new FormData(form)) {
    if (/^(knee_|reason_|missing_)/.test(k)) params.append(k, String(v));
  }
  return fetch(`${form.dataset.text}?${params}`, { headers: { accept: "application/json" } }).then(
    (r) => (r.ok ? r.json() : null),
  );
}

function showTextNote(text) {
  const el = document.getElementById("text-note");
  if (el) el.textContent = text;
}

/**
 * Keeps the summary and the report text in line with the grades. Returns `refresh` (its promise
 * settles once the text asked for is in) and `stopTyping` (drops a refresh still waiting).
 */
function reportText(study) {
  const { form, knees } = study;
  const findings = document.getElementById("findings");
  const impression = document.getElementById("impression");
  // Each text field follows the grades until the radiologist writes in it.
  const follows = new Set(
    (form.dataset.follows ?? "")
      .split(" ")
      .filter(Boolean)
      .map((id) => document.getElementById(id)),
  );
  let seq = 0;
  let pending = Promise.resolve();
  const refresh = () => {
    updateSummary(knees);
    if (follows.size === 0 || !form.dataset.text) return pending;
    const n = ++seq;
    pending = fetchReportText(form)
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
  for (const area of [findings, impression]) {
    area?.addEventListener("input", () => {
      follows.delete(area);
      showTextNote(
        "Your own text: it is signed exactly as written — keep it in line with your grades.",
      );
    });
  }
  document.getElementById("regenerate")?.addEventListener("click", () => {
    follows.add(findings);
    follows.add(impression);
    refresh();
    showTextNote("The text follows your grades again.");
  });
  return { refresh, stopTyping: () => clearTimeout(typingTimer) };
}

/** Returns `sign`: submits the form once, with the report text of the grades on screen. */
function signOnce(study, text) {
  const { form } = study;
  let signing = false;
  // A second submission of the same page (a second Enter) would only be refused: none is sent.
  form.addEventListener("submit", (event) => {
    if (form.dataset.submitted === "1") event.preventDefault();
    form.dataset.submitted = "1";
  });
  return async () => {
    const button = document.getElementById("sign");
    if (!study.editable || !button || button.disabled || signing) return;
    if (!study.armed) return;
    signing = true;
    text.stopTyping();
    await text.refresh();
    form.requestSubmit(button);
  };
}

// --- keyboard ------------------------------------------------------------------------------
function isText(el) {
  return (
    el instanceof HTMLTextAreaElement ||
    (el instanceof HTMLInputElement && el.type !== "radio" && el.type !== "checkbox")
  );
}

/** Focus on the study: the page itself, a knee card, or a grade button inside one. */
function onStudy(el) {
  return (
    el === document.body ||
    el === document.documentElement ||
    el?.id === "study" ||
    (el instanceof HTMLElement && el.matches("section.knee")) ||
    (el instanceof HTMLInputElement && el.type === "radio" && el.closest("section.knee") !== null)
  );
}

function chooseGrade(study, knee, value, refresh) {
  const radio = knee.querySelector(`input[type=radio][value="${value}"]`);
  // A radio of a disabled fieldset (a signed study before "Amend") is :disabled, not .disabled.
  if (!study.editable || !radio || radio.matches(":disabled")) return null;
  radio.checked = true;
  refresh();
  return radio;
}

function studyKeyboard(study, sign, refresh) {
  const { form, knees } = study;
  document.addEventListener("keydown", (event) => {
    const t = event.target;
    if (event.altKey || event.metaKey) return;
    if (event.key !== "Enter" && !["Control", "Shift", "Alt", "Meta"].includes(event.key)) {
      study.armed = true;
    }
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
      if (knee) moveToKnee(study, knees.indexOf(knee));
      return;
    }
    if (!onStudy(t) || isText(t)) return;
    studyKey(study, event, sign, refresh);
  });
}

/** A key pressed with the focus on the study. */
function studyKey(study, event, sign, refresh) {
  const knee = study.knees[study.current];
  const next = () => {
    if (study.current < study.knees.length - 1) moveToKnee(study, study.current + 1);
  };
  if (/^[0-4]$/.test(event.key)) {
    event.preventDefault();
    if (!chooseGrade(study, knee, event.key, refresh)) return;
    next();
  } else if (event.key === "n" || event.key === "N") {
    event.preventDefault();
    if (!chooseGrade(study, knee, "ng", refresh)) return;
    knee.querySelector("input.reason")?.focus();
  } else if (event.key === "p" || event.key === "P") {
    event.preventDefault();
    if (!chooseGrade(study, knee, "np", refresh)) return;
    next();
  } else if (event.key === "ArrowDown" || event.key === "ArrowRight") {
    // Never the browser's default: on a focused radio it would change the grade.
    event.preventDefault();
    moveToKnee(study, study.current + 1);
  } else if (event.key === "ArrowUp" || event.key === "ArrowLeft") {
    event.preventDefault();
    moveToKnee(study, study.current - 1);
  } else if (event.key === "Enter") {
    event.preventDefault();
    if (!event.repeat) sign();
  }
}

// --- image tools: zoom (full resolution, drag to pan), window/level on the original pixels (the
// server renders the radiograph through the window asked for), and each knee's region enlarged.
function imageViewer(frame) {
  const viewer = frame.querySelector("[data-viewer]");
  const img = viewer.querySelector("img");
  // zoom 0: fitted to the column; otherwise the factor of the full resolution.
  const view = { zoom: 0, voi: null };
  overlayRegions(viewer, img);
  frame.addEventListener("click", (event) => {
    const b = event.target.closest("button");
    if (!b || !applyImageTool(frame, view, b)) return;
    renderView(viewer, img, view);
  });
  dragToPan(viewer, view);
}

function viewSource(img, view) {
  const p = new URLSearchParams();
  if (view.zoom > 0) p.set("full", "1");
  if (view.voi) {
    p.set("wc", String(view.voi.center));
    p.set("ww", String(view.voi.width));
  }
  const q = p.toString();
  return q ? `${img.dataset.base}?${q}` : img.dataset.base;
}

/** The knee regions (an SVG in the image's own pixels) lie exactly over the picture, at any zoom. */
function overlayRegions(viewer, img) {
  const regions = viewer.querySelector("svg.regions");
  if (!regions) return;
  const place = () => {
    regions.style.left = `${img.offsetLeft}px`;
    regions.style.top = `${img.offsetTop}px`;
    regions.style.width = `${img.offsetWidth}px`;
    regions.style.height = `${img.offsetHeight}px`;
  };
  const watch = new ResizeObserver(place);
  watch.observe(img);
  watch.observe(viewer);
  img.addEventListener("load", place);
  place();
}

/** Applies a tool button to the view; false when there is nothing to render (a bad window). */
function applyImageTool(frame, view, b) {
  if (b.dataset.zoom === "in") view.zoom = view.zoom === 0 ? 0.5 : Math.min(4, view.zoom * 2);
  else if (b.dataset.zoom === "out") view.zoom = view.zoom <= 0.5 ? 0 : view.zoom / 2;
  else if (b.dataset.zoom === "fit") view.zoom = 0;
  else if (b.dataset.window === "apply") {
    const width = Number(frame.querySelector("input.ww").value);
    const center = Number(frame.querySelector("input.wc").value);
    if (!(width > 0) || !Number.isFinite(center)) return false;
    view.voi = { center, width };
  } else if (b.dataset.window === "reset") view.voi = null;
  return true;
}

function renderView(viewer, img, view) {
  const src = viewSource(img, view);
  if (img.getAttribute("src") !== src) img.src = src;
  viewer.classList.toggle("zoomed", view.zoom > 0);
  // Sized at load by the zoom of then, the latest asked for.
  const size = () => {
    img.style.width = view.zoom > 0 ? `${img.naturalWidth * view.zoom}px` : "";
    img.style.maxWidth = view.zoom > 0 ? "none" : "";
    img.style.maxHeight = view.zoom > 0 ? "none" : "";
  };
  if (img.complete) size();
  img.addEventListener("load", size, { once: true });
}

function dragToPan(viewer, view) {
  let drag = null;
  viewer.addEventListener("pointerdown", (e) => {
    if (view.zoom === 0) return;
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

function heatMapToggles() {
  for (const b of document.querySelectorAll("button[data-heat-toggle]")) {
    const img = b.closest("figure").querySelector("img");
    b.addEventListener("click", () => {
      const on = img.getAttribute("src") === img.dataset.heat;
      img.src = on ? img.dataset.plain : img.dataset.heat;
      b.textContent = on ? "heat map on" : "heat map off";
    });
  }
}

function regionEnlargers() {
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
}

localTimes();
liveCounts();
worklistKeyboard();
studyPage();
for (const frame of document.querySelectorAll("figure.viewer-frame")) imageViewer(frame);
heatMapToggles();
regionEnlargers();
