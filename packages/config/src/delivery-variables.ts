/**
 * The variables of report delivery: its retry schedule (capped doubling, the dead-letter horizon)
 * and the PACS probe that releases waiting reports when the PACS answers again. Part of
 * `variables` (variables.ts), in this place of docs/CONFIGURATION.md.
 */
import { z } from "zod";

const seconds = z.coerce.number().positive().max(3600, "must be at most 3600 seconds");

export const deliveryVariables = {
  DELIVERY_BACKOFF_SECONDS: seconds
    .default(10)
    .describe(
      "delay before a report's first delivery retry; it doubles with each further retry up to `DELIVERY_BACKOFF_MAX_SECONDS`",
    ),
  DELIVERY_BACKOFF_MAX_SECONDS: seconds
    .default(120)
    .describe(
      "the longest a delivery waits between two retries: a PACS, FHIR server or RIS that is down gets one try per waiting report this often, and a report whose destination is back waits at most this long (the PACS sooner: `PACS_PROBE_SECONDS`)",
    ),
  DELIVERY_GIVE_UP_HOURS: z.coerce
    .number()
    .positive()
    .max(24 * 14, "must be at most 336 hours (14 days)")
    .default(6)
    .describe(
      "a report not delivered after retrying this long is dead-lettered (`FAILED`, see `kneegrade status` and `kneegrade redeliver`): the attempts are as many as the retry delays need to span it (184 with the defaults)",
    ),
  DELIVERY_ATTEMPTS: z.coerce
    .number()
    .int("must be a whole number")
    .min(1)
    .max(10_000)
    .optional()
    .meta({
      description:
        "delivery attempts of a report, instead of those `DELIVERY_GIVE_UP_HOURS` gives: after the last one it is dead-lettered; with the retry delays capped, a count spans far less time than it did uncapped (12 attempts: ≈ 17 minutes), and the reporter says at start-up how long its attempts span",
      unset: "from `DELIVERY_GIVE_UP_HOURS`",
    }),
  PACS_PROBE_SECONDS: z.coerce
    .number()
    .min(0)
    .max(3600, "must be at most 3600 seconds")
    .default(15)
    .describe(
      "while reports wait to be retried after the PACS failed them, the reporter sends the PACS a C-ECHO this often; when a PACS that did not answer answers again, the waiting reports are sent at once instead of at their next retry; `0`: no probe",
    ),
};
