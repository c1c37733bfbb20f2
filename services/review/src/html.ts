/**
 * Server-rendered HTML: a tagged template that escapes every interpolated value unless it is
 * already `Html` (built by this tag), so patient data can never become markup.
 */
export class Html {
  constructor(readonly value: string) {}
  toString() {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};
/**
 * Bidirectional formatting characters (embeddings, overrides, isolates, marks) reorder what is
 * shown without changing what is stored: "ID\u202e9876" would read "ID6789". Text from a data set
 * is shown in its stored order, so they are dropped (natural right-to-left text needs none).
 */
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
export const escapeHtml = (s: string) =>
  s.replace(BIDI_CONTROLS, "").replace(/[&<>"']/g, (c) => ESCAPES[c]!);

type Value = Html | string | number | boolean | null | undefined | Value[];

function render(v: Value): string {
  if (v === null || v === undefined || v === false) return "";
  if (Array.isArray(v)) return v.map(render).join("");
  if (v instanceof Html) return v.value;
  return escapeHtml(String(v));
}

export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  let out = strings[0]!;
  values.forEach((v, i) => {
    out += render(v) + strings[i + 1]!;
  });
  return new Html(out);
}

/** "Doe^Jane" → "Doe, Jane" (DICOM PN, alphabetic group). */
export const personName = (pn: string | null) =>
  pn ? pn.split("=")[0]!.split("^").filter(Boolean).join(", ") : "—";
/** "20240131" → "2024-01-31" */
export const dicomDate = (da: string | null) =>
  da && /^\d{8}$/.test(da) ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6)}` : (da ?? "—");

/** A UTC instant, shown by the page script in the browser's own time zone. */
export const localTime = (d: Date) =>
  html`<time datetime="${d.toISOString()}" class="local">${d.toISOString().slice(0, 16).replace("T", " ")} UTC</time>`;

export interface PageUser {
  username: string;
  displayName: string;
  role: string;
}

/** The page frame: title, navigation, who is logged in (and a CSRF-protected logout). */
export function page(
  title: string,
  body: Html,
  o: { user?: PageUser; csrf?: string; scripts?: string[] } = {},
): string {
  const nav = o.user
    ? html`<nav>
        <a href="/">Worklist</a>
        <a href="/agreement">Agreement</a>
        ${o.user.role === "ADMIN" ? html`<a href="/users">Users</a>` : ""}
        <span class="who">${personName(o.user.displayName)} (${o.user.role.toLowerCase()})</span>
        <form method="post" action="/logout" class="inline">
          <input type="hidden" name="_csrf" value="${o.csrf}">
          <button type="submit">Log out</button>
        </form>
      </nav>`
    : "";
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} – kneegrade review</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/review.css">
${(o.scripts ?? []).map((s) => html`<script src="${s}" defer></script>`)}
</head>
<body>
<header><strong>kneegrade review</strong>${nav}</header>
<main>${body}</main>
</body>
</html>`.value;
}
