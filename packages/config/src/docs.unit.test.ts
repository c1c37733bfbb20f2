import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CONFIGURATION_DOC, configurationMarkdown } from "./docs.ts";
import { variables } from "./variables.ts";

describe("docs/CONFIGURATION.md", () => {
  it("is what `npm run docs:config` writes from the schema", () => {
    expect(readFileSync(CONFIGURATION_DOC, "utf8"), "run `npm run docs:config`").toBe(
      configurationMarkdown(),
    );
  });

  it("has one row per variable with its default, accepted values and description", () => {
    const rows = configurationMarkdown()
      .split("\n")
      .filter((line) => line.startsWith("| `"));
    expect(rows.map((row) => /^\| `([A-Z0-9_]+)`/.exec(row)?.[1])).toEqual(Object.keys(variables));
    expect(rows).toContain(
      "| `LISTENER_PORT` | `11112` | integer 0–65535 | the listener's DICOM port (`0`: any free port) |",
    );
    const row = (name: string) => rows.find((r) => r.startsWith(`| \`${name}\` `))!.split(" | ");
    expect(row("STUDY_STABLE_SECONDS").slice(1, 3)).toEqual(["`10`", "number > 0"]);
    expect(row("DEVICE_OBSERVER_UID")[1]).toBe("derived from `LISTENER_AET`");
    expect(row("HL7_HOST")[1]).toBe("unset");
    expect(row("ALLOWED_CALLING_AETS").slice(1, 3)).toEqual([
      "empty",
      "comma-separated; each AE title: 1–16 printable ASCII characters, no backslash",
    ]);
    expect(row("REVIEW_SESSION_SECRET")[2]).toBe("text, ≥ 32 characters");
    expect(row("LOG_LEVEL")[2]).toBe(
      "`trace`, `debug`, `info`, `warn`, `error`, `fatal`, `silent`",
    );
  });
});
