/**
 * Local accounts of the review pages (`kneegrade user add|passwd|disable`): argon2id hashes
 * (@node-rs/argon2, OWASP's minimum parameters: 19 MiB, 2 passes), three roles.
 */
import type { Db } from "@kneegrade/db";
import { hash, verify } from "@node-rs/argon2";
import { z } from "zod";
import { passwordProblem } from "./password.ts";

export const ROLES = ["radiologist", "viewer", "admin"] as const;
export type Role = (typeof ROLES)[number];
const DB_ROLE = { radiologist: "RADIOLOGIST", viewer: "VIEWER", admin: "ADMIN" } as const;

export const NewUser = z
  .object({
    username: z
      .string()
      .trim()
      .regex(/^[a-z0-9._-]{2,64}$/, "2-64 characters: lower-case letters, digits, . _ -"),
    /** As written into a signed report: DICOM PN, e.g. "Doe^Jane" (family^given). */
    displayName: z.string().trim().min(1).max(64),
    organisation: z.string().trim().min(1).max(64),
    role: z.enum(ROLES),
    password: z
      .string()
      .max(1024)
      .superRefine((p, ctx) => {
        const problem = passwordProblem(p);
        if (problem) ctx.addIssue({ code: "custom", message: problem });
      }),
  })
  .superRefine((u, ctx) => {
    // The account's own names make a password easier to guess than the field alone can tell.
    if (passwordProblem(u.password)) return;
    const problem = passwordProblem(u.password, [u.username, u.displayName]);
    if (problem) ctx.addIssue({ code: "custom", path: ["password"], message: problem });
  });
export type NewUser = z.infer<typeof NewUser>;

const ARGON2 = { memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

/** `actor`: who did it, for the audit trail ("cli", or the admin's user name). */
export async function addUser(db: Db, user: NewUser, actor = "cli"): Promise<{ id: string }> {
  const u = NewUser.parse(user);
  if (await db.user.findUnique({ where: { username: u.username } })) {
    throw new Error(`user ${u.username} exists (use \`kneegrade user passwd\`)`);
  }
  const created = await db.user.create({
    data: {
      username: u.username,
      displayName: u.displayName,
      organisation: u.organisation,
      role: DB_ROLE[u.role],
      passwordHash: await hash(u.password, ARGON2),
    },
  });
  await db.auditEvent.create({
    data: { event: "user.added", actor, details: { username: u.username, role: u.role } },
  });
  return { id: created.id };
}

/** A new password; every open session of the user ends. */
export async function setPassword(db: Db, username: string, password: string): Promise<void> {
  const p = NewUser.shape.password.parse(password);
  const user = await db.user.findUnique({ where: { username } });
  if (!user) throw new Error(`no user ${username}`);
  await db.$transaction([
    db.user.update({ where: { id: user.id }, data: { passwordHash: await hash(p, ARGON2) } }),
    db.session.deleteMany({ where: { userId: user.id } }),
    db.auditEvent.create({ data: { event: "user.password", actor: "cli", details: { username } } }),
  ]);
}

/** The account can no longer log in; its sessions end. */
export async function disableUser(db: Db, username: string, actor = "cli"): Promise<void> {
  const user = await db.user.findUnique({ where: { username } });
  if (!user) throw new Error(`no user ${username}`);
  await db.$transaction([
    db.user.update({ where: { id: user.id }, data: { disabled: true } }),
    db.session.deleteMany({ where: { userId: user.id } }),
    db.auditEvent.create({ data: { event: "user.disabled", actor, details: { username } } }),
  ]);
}

// A fixed hash to verify against when the user does not exist: same work, no timing oracle.
let decoy: Promise<string> | undefined;

/** The user when the password is right and the account enabled; null otherwise. */
export async function checkPassword(db: Db, username: string, password: string) {
  const user = await db.user.findUnique({ where: { username } });
  decoy ??= hash("kneegrade-decoy-password", ARGON2);
  const ok = await verify(user?.passwordHash ?? (await decoy), password).catch(() => false);
  return ok && user && !user.disabled ? user : null;
}
