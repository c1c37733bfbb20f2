/**
 * What the review's plugins share: their dependencies, the signed-in user on each request (set by
 * the auth plugin, auth.ts), the audit trail, and the answers every page module gives alike.
 */
import type { Config } from "@kneegrade/config";
import type { ReportStudyJob } from "@kneegrade/contracts";
import type { Db } from "@kneegrade/db";
import type { Logger } from "@kneegrade/log";
import type { FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import { html, page } from "./html.ts";

export type ReviewConfig = Pick<
  Config,
  | "REVIEW_SESSION_SECRET"
  | "REVIEW_SESSION_HOURS"
  | "REVIEW_LOGIN_ATTEMPTS_PER_MINUTE"
  | "REVIEW_AGREEMENT_ALERT"
  | "REVIEW_AGREEMENT_DAYS"
  | "REVIEW_AGREEMENT_MIN_KNEES"
  | "REVIEW_TRUSTED_PROXIES"
> &
  Partial<Pick<Config, "REVIEW_VIEWER_URL">>;

/** What the reporter queue must offer (a BullMQ Queue does). */
export interface ReportQueue {
  add(name: string, data: ReportStudyJob, opts: { jobId: string }): Promise<unknown>;
}

export interface ReviewDeps {
  db: Db;
  config: ReviewConfig;
  log: Logger;
  reportQueue: ReportQueue;
  /** HTTPS: cookies are marked Secure, HSTS and upgrade-insecure-requests are sent. */
  https?: { key: string; cert: string };
}

export interface SessionUser {
  id: string;
  username: string;
  displayName: string;
  organisation: string;
  role: "RADIOLOGIST" | "VIEWER" | "ADMIN";
}

declare module "fastify" {
  interface FastifyRequest {
    user: SessionUser | null;
    sessionId: string | null;
    loginNonce: string | null;
  }
  interface FastifyReply {
    /** The CSRF token for forms on this page: bound to the session, or to the login nonce. */
    csrfToken(): string;
  }
}

/** Records who did what from where (no patient data: the study's UID at most). */
export const audit = (
  db: Db,
  event: string,
  request: FastifyRequest,
  o: { actor?: string; studyInstanceUid?: string; details?: Record<string, unknown> } = {},
) =>
  db.auditEvent.create({
    data: {
      event,
      actor: o.actor ?? request.user?.username ?? "anonymous",
      address: request.ip,
      ...(o.studyInstanceUid ? { studyInstanceUid: o.studyInstanceUid } : {}),
      ...(o.details ? { details: o.details as object } : {}),
    },
  });

/** The signed-in user: the page modules' routes are registered behind `requireSession`. */
export const signedIn = (request: FastifyRequest) => request.user!;

/** 403 with the page frame: the user's role does not allow `what`. */
export const forbidden = (request: FastifyRequest, reply: FastifyReply, what: string) =>
  reply
    .status(403)
    .type("text/html")
    .send(
      page("Forbidden", html`<h1>Error 403</h1><p class="error">${what}</p>`, {
        user: signedIn(request),
        csrf: reply.csrfToken(),
      }),
    );

const StudyParams = z.object({ uid: z.string().regex(/^[0-9.]{1,64}$/) });

/** The study UID of the path, or null when it is not one (answered 404, never 500). */
export const studyUid = (request: FastifyRequest) => {
  const p = StudyParams.safeParse(request.params);
  return p.success ? p.data.uid : null;
};
