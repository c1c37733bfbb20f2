/**
 * The admin's page: the accounts of the review pages, adding one and disabling one (the same
 * functions as `kneegrade user …`, audited with the admin's name).
 */
import type { Db } from "@kneegrade/db";
import { addUser, disableUser, NewUser, ROLES } from "@kneegrade/review-data";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { forbidden, type ReviewDeps, signedIn } from "./context.ts";
import { html, type PageUser, page, personName } from "./html.ts";

export async function usersPage(
  db: Db,
  user: PageUser,
  csrf: string,
  message?: { error?: string; notice?: string },
): Promise<string> {
  const users = await db.user.findMany({
    orderBy: { username: "asc" },
    include: { sessions: { orderBy: { createdAt: "desc" }, take: 1 } },
  });
  const body = html`
<h1>Users</h1>
${message?.error ? html`<p class="error" role="alert">${message.error}</p>` : ""}
${message?.notice ? html`<p class="notice" role="status">${message.notice}</p>` : ""}
<table class="worklist" id="users">
<thead><tr><th>User</th><th>Name (in signed reports)</th><th>Organisation</th><th>Role</th><th>Last login</th><th></th></tr></thead>
<tbody>
${users.map(
  (u) => html`<tr>
  <td>${u.username}</td><td>${personName(u.displayName)}</td><td>${u.organisation}</td>
  <td>${u.role.toLowerCase()}</td>
  <td>${u.sessions[0]?.createdAt.toISOString() ?? "—"}</td>
  <td>${
    u.disabled
      ? "disabled"
      : html`<form method="post" action="/users/${u.username}/disable" class="inline">
        <input type="hidden" name="_csrf" value="${csrf}"><button type="submit">Disable</button></form>`
  }</td>
</tr>`,
)}
</tbody>
</table>
<h2>Add a user</h2>
<form method="post" action="/users" class="login" id="add-user">
  <input type="hidden" name="_csrf" value="${csrf}">
  <label>User name <input name="username" required pattern="[a-z0-9._\\-]{2,64}"></label>
  <label>Name, as DICOM writes it (Family^Given) <input name="displayName" required maxlength="64"></label>
  <label>Organisation <input name="organisation" required maxlength="64"></label>
  <label>Role <select name="role">${ROLES.map((r) => html`<option value="${r}">${r}</option>`)}</select></label>
  <label>Password (at least 12 characters) <input name="password" type="password" required minlength="12" autocomplete="new-password"></label>
  <button type="submit">Add</button>
</form>`;
  return page("Users", body, { user, csrf });
}

const ADMIN_ONLY = "Only admins manage users.";
const failure = (e: Error) => e.message;

export const adminRoutes: FastifyPluginAsync<ReviewDeps> = async (app, { db }) => {
  /** The users page again, with what became of the admin's action (status 200, or the error's). */
  const usersAnswer = async (
    request: FastifyRequest,
    reply: FastifyReply,
    outcome: { error?: string; status?: number; notice?: string } = {},
  ) =>
    reply
      .status(outcome.error ? (outcome.status ?? 400) : 200)
      .type("text/html")
      .send(await usersPage(db, signedIn(request), reply.csrfToken(), outcome));

  app.get("/users", async (request, reply) => {
    if (signedIn(request).role !== "ADMIN") return forbidden(request, reply, ADMIN_ONLY);
    return usersAnswer(request, reply);
  });
  app.post("/users", async (request, reply) => {
    const u = signedIn(request);
    if (u.role !== "ADMIN") return forbidden(request, reply, ADMIN_ONLY);
    const form = NewUser.safeParse(request.body);
    if (!form.success) {
      const error = form.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
      return usersAnswer(request, reply, { error });
    }
    const error = await addUser(db, form.data, u.username).then(() => undefined, failure);
    return usersAnswer(
      request,
      reply,
      error ? { error } : { notice: `Added ${form.data.username}.` },
    );
  });
  app.post("/users/:username/disable", async (request, reply) => {
    const u = signedIn(request);
    if (u.role !== "ADMIN") return forbidden(request, reply, ADMIN_ONLY);
    const { username } = request.params as { username: string };
    if (username === u.username) {
      return usersAnswer(request, reply, { error: "You cannot disable your own account." });
    }
    const error = await disableUser(db, username, u.username).then(() => undefined, failure);
    return usersAnswer(
      request,
      reply,
      error ? { error, status: 404 } : { notice: `Disabled ${username}.` },
    );
  });
};
