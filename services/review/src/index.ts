/**
 * The review service: the radiologists' worklist, study pages, signing and agreement monitoring,
 * served over HTTP(S) on REVIEW_HOST:REVIEW_PORT (loopback by default: the pages show patient
 * data). A signature becomes a `report-study` job; the reporter writes and delivers the signed SR.
 */
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import type { Config } from "@kneegrade/config";
import { QUEUES } from "@kneegrade/contracts";
import type { Db } from "@kneegrade/db";
import type { Logger } from "@kneegrade/log";
import { createQueue } from "@kneegrade/queue";
import { buildReviewApp } from "./app.ts";

export { buildReviewApp, cookieNames, localPath, SESSION_COOKIE } from "./app.ts";

export interface RunningReview {
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startReview(config: Config, db: Db, log: Logger): Promise<RunningReview> {
  const https =
    config.REVIEW_TLS_CERT && config.REVIEW_TLS_KEY
      ? {
          cert: readFileSync(config.REVIEW_TLS_CERT, "utf8"),
          key: readFileSync(config.REVIEW_TLS_KEY, "utf8"),
        }
      : undefined;
  if (!config.REVIEW_SESSION_SECRET) {
    log.warn(
      { event: "review.random-secret" },
      "REVIEW_SESSION_SECRET is not set: a random one is used, so open forms fail once after a restart",
    );
  }
  const reportQueue = createQueue(QUEUES.reportStudy, config);
  const app = await buildReviewApp({
    db,
    config,
    log,
    reportQueue,
    ...(https ? { https } : {}),
  });
  await app.listen({ host: config.REVIEW_HOST, port: config.REVIEW_PORT });
  const { port } = app.server.address() as AddressInfo;
  const host = config.REVIEW_HOST.includes(":") ? `[${config.REVIEW_HOST}]` : config.REVIEW_HOST;
  const url = `${https ? "https" : "http"}://${host === "0.0.0.0" ? "127.0.0.1" : host}:${port}`;
  log.info({ event: "review.started", url }, "review pages listening");
  return {
    url,
    port,
    close: async () => {
      await app.close();
      await reportQueue.close();
    },
  };
}
