// The only script of the review pages. Worklist: the counts refresh every 30 s. Study page,
// keyboard-first: 0-4 set the grade of the current knee and move to the next, N marks it not
// gradable (and focuses the reason), Tab/arrows move between knees, Enter signs. Keys typed into
// text fields are left alone.
(() => {
  const counts = document.querySelectorAll("[data-count]");
  if (counts.length === 0) return;
  setInterval(async () => {
    const r = await fetch("/counts.json", { headers: { accept: "application/json" } });
    if (!r.ok) return;
    const n = await r.json();
    for (const el of counts) el.textContent = String(n[el.dataset.count] ?? el.textContent);
  }, 30_000);
})();

(() => {
  const form = document.getElementById("sign-form");
  if (!form) return;
  const knees = [...form.querySelectorAll("section.knee")];
  if (knees.length === 0) return;
  let current = 0;
  const show = () => {
    knees.forEach((k, i) => {
      k.classList.toggle("current", i === current);
    });
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
  const typing = (el) =>
    el instanceof HTMLTextAreaElement ||
    (el instanceof HTMLInputElement && (el.type === "text" || el.type === "password"));
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const knee = knees[current];
    if (/^[0-4]$/.test(event.key)) {
      const radio = knee.querySelector(`input[type=radio][value="${event.key}"]`);
      if (!radio || radio.disabled) return;
      radio.checked = true;
      event.preventDefault();
      if (current < knees.length - 1) current += 1;
      show();
    } else if (event.key === "n" || event.key === "N") {
      const radio = knee.querySelector('input[type=radio][value="ng"]');
      if (!radio || radio.disabled) return;
      radio.checked = true;
      event.preventDefault();
      knee.querySelector("input.reason")?.focus();
    } else if (event.key === "ArrowDown" || event.key === "ArrowRight") {
      current = Math.min(knees.length - 1, current + 1);
      show();
    } else if (event.key === "ArrowUp" || event.key === "ArrowLeft") {
      current = Math.max(0, current - 1);
      show();
    } else if (event.key === "Enter") {
      const button = document.getElementById("sign");
      if (!button) return;
      event.preventDefault();
      form.requestSubmit(button);
    }
  });
})();
