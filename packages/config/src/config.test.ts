import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "./config.ts";

describe("loadConfig", () => {
  it("has defaults that work on one machine", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      DATABASE_URL: "postgresql://postgres@127.0.0.1:5432/kneegrade",
      REDIS_URL: "redis://127.0.0.1:6379",
      LISTENER_PORT: 11112,
      LISTENER_AET: "KNEEGRADE",
      ALLOWED_CALLING_AETS: [],
      STUDY_STABLE_SECONDS: 10,
      PACS_HOST: "127.0.0.1",
      PACS_PORT: 4242,
      PACS_AET: "ORTHANC",
    });
    expect(c.LISTENER_TLS_KEY).toBeUndefined();
  });

  it("parses the calling AE allow-list", () => {
    expect(loadConfig({ ALLOWED_CALLING_AETS: " CR1, DX_ROOM2 ,," }).ALLOWED_CALLING_AETS).toEqual([
      "CR1",
      "DX_ROOM2",
    ]);
  });

  it("reports every problem with its variable name", () => {
    let error: unknown;
    try {
      loadConfig({
        LISTENER_PORT: "99999",
        LISTENER_AET: "A_TITLE_LONGER_THAN_16",
        STUDY_STABLE_SECONDS: "-1",
        DATABASE_URL: "mysql://x@y/z",
        LISTENER_TLS_KEY: "/etc/key.pem",
        ALLOWED_CALLING_AETS: "OK,BAD\\AE",
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems.join("\n");
    for (const name of [
      "LISTENER_PORT",
      "LISTENER_AET",
      "STUDY_STABLE_SECONDS",
      "DATABASE_URL",
      "LISTENER_TLS_CERT",
      "ALLOWED_CALLING_AETS",
    ]) {
      expect(problems).toContain(name);
    }
  });
});
