/**
 * The error page: every error a route throws, and the 403 for a form that is not this site's own,
 * answered as a page with a way back to the worklist. Server errors are logged without the request's
 * data; their message stays in the log.
 */
import type { Logger } from "@kneegrade/log";
import type { FastifyReply, FastifyRequest } from "fastify";
import { html, page } from "./html.ts";

/** An error page outside any session's frame. */
export const errorPage = (status: number, message: string) =>
  page(
    `Error ${status}`,
    html`<h1>Error ${status}</h1><p class="error">${message}</p><p><a href="/">Worklist</a></p>`,
  );

/** What the user reads for an error of this status. */
const messageFor = (status: number, error: Error) =>
  status === 429
    ? "Too many login attempts from your address: wait a minute."
    : status >= 500
      ? "Something went wrong; the error was logged."
      : error.message;

export const errorHandler =
  (log: Logger) =>
  async (
    error: Error & { statusCode?: number; code?: string },
    request: FastifyRequest,
    reply: FastifyReply,
  ) => {
    const status = error.statusCode ?? 500;
    if (status >= 500) {
      log.error(
        // Prisma's messages embed the call and its arguments: its last line says what failed.
        {
          event: "review.error",
          url: request.routeOptions.url,
          err: error.message.trim().split("\n").pop(),
        },
        "review page failed",
      );
    }
    return reply
      .status(status)
      .type("text/html")
      .send(errorPage(status, messageFor(status, error)));
  };
