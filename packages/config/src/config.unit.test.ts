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
      METRICS_HOST: "127.0.0.1",
      METRICS_PORT: 9464,
      REVIEW_TRUSTED_PROXIES: [],
    });
    expect(c.LISTENER_TLS_KEY).toBeUndefined();
  });

  it("parses the trusted reverse proxies and refuses what is not an address or range", () => {
    expect(
      loadConfig({ REVIEW_TRUSTED_PROXIES: "10.0.0.5, 192.168.0.0/16,::1" }).REVIEW_TRUSTED_PROXIES,
    ).toEqual(["10.0.0.5", "192.168.0.0/16", "::1"]);
    expect(() => loadConfig({ REVIEW_TRUSTED_PROXIES: "proxy.example" })).toThrow(
      /REVIEW_TRUSTED_PROXIES/,
    );
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
        METRICS_PORT: "70000",
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
      "METRICS_PORT",
    ]) {
      expect(problems).toContain(name);
    }
  });

  it("has network guard limits that work, and refuses ones that cannot", () => {
    expect(loadConfig({})).toMatchObject({
      LISTENER_MAX_CONNECTIONS: 64,
      LISTENER_MAX_CONNECTIONS_PER_PEER: 8,
      LISTENER_ASSOCIATION_TIMEOUT_SECONDS: 30,
      LISTENER_IDLE_TIMEOUT_SECONDS: 30,
      LISTENER_MAX_PDU_BYTES: 266_240,
      LISTENER_MAX_ASSOCIATE_RQ_BYTES: 65_536,
    });
    expect(() =>
      loadConfig({
        MAX_ASSOCIATIONS: "100",
        LISTENER_MAX_CONNECTIONS_PER_PEER: "200",
      }),
    ).toThrow(/LISTENER_MAX_CONNECTIONS: must be at least MAX_ASSOCIATIONS \(100\)/);
    expect(() => loadConfig({ LISTENER_MAX_CONNECTIONS_PER_PEER: "65" })).toThrow(
      /LISTENER_MAX_CONNECTIONS_PER_PEER: must be at most LISTENER_MAX_CONNECTIONS \(64\)/,
    );
    expect(() => loadConfig({ LISTENER_MAX_PDU_BYTES: "16384" })).toThrow(
      /LISTENER_MAX_PDU_BYTES: must be at least 262144/,
    );
    expect(() => loadConfig({ LISTENER_IDLE_TIMEOUT_SECONDS: "0" })).toThrow(
      /LISTENER_IDLE_TIMEOUT_SECONDS/,
    );
  });

  it("validates the review pages' settings", () => {
    expect(loadConfig({})).toMatchObject({
      REVIEW_HOST: "127.0.0.1",
      REVIEW_PORT: 8484,
      REVIEW_SESSION_HOURS: 10,
      REVIEW_AGREEMENT_ALERT: 0.6,
    });
    expect(() => loadConfig({ REVIEW_TLS_CERT: "/tmp/cert.pem" })).toThrow(
      /REVIEW_TLS_CERT: REVIEW_TLS_KEY and REVIEW_TLS_CERT must be set together/,
    );
    expect(() => loadConfig({ REVIEW_SESSION_SECRET: "short" })).toThrow(
      /REVIEW_SESSION_SECRET: must be at least 32 characters/,
    );
    expect(() => loadConfig({ REVIEW_AGREEMENT_ALERT: "1.5" })).toThrow(/REVIEW_AGREEMENT_ALERT/);
  });

  it("turns the FHIR and HL7 outputs on only when configured, and says what is wrong", () => {
    const off = loadConfig({});
    expect(off.FHIR_BASE_URL).toBeUndefined();
    expect(off.HL7_HOST).toBeUndefined();
    const on = loadConfig({
      FHIR_BASE_URL: "https://ehr.example/fhir/",
      FHIR_TOKEN: "t0ken",
      HL7_HOST: "ris.example",
      HL7_PORT: "2575",
    });
    expect(on).toMatchObject({
      FHIR_BASE_URL: "https://ehr.example/fhir",
      HL7_HOST: "ris.example",
      HL7_PORT: 2575,
      HL7_SENDING_APPLICATION: "KNEEGRADE",
      HL7_RECEIVING_APPLICATION: "RIS",
      RESULT_TIMEOUT_SECONDS: 30,
    });
    expect(
      loadConfig({ FHIR_BASE_URL: "http://127.0.0.1:8103/fhir", FHIR_TOKEN: "t" }),
    ).toBeTruthy();
    expect(() => loadConfig({ FHIR_BASE_URL: "ftp://ehr.example/fhir" })).toThrow(
      /FHIR_BASE_URL: must be an http:\/\/ or https:\/\/ URL/,
    );
    expect(() => loadConfig({ FHIR_BASE_URL: "http://ehr.example/fhir", FHIR_TOKEN: "t" })).toThrow(
      /FHIR_BASE_URL: must be https:\/\/ when FHIR_TOKEN is set/,
    );
    expect(() => loadConfig({ FHIR_TOKEN: "t" })).toThrow(/FHIR_BASE_URL: must be set when/);
    expect(() =>
      loadConfig({ FHIR_BASE_URL: "https://ehr.example/fhir", FHIR_TLS_CERT: "/c.pem" }),
    ).toThrow(/FHIR_TLS_KEY: FHIR_TLS_CERT and FHIR_TLS_KEY must be set together/);
    expect(() => loadConfig({ HL7_HOST: "ris.example" })).toThrow(
      /HL7_PORT: HL7_HOST and HL7_PORT must be set together/,
    );
    expect(() => loadConfig({ HL7_PORT: "70000" })).toThrow(/HL7_PORT/);
    expect(() => loadConfig({ FHIR_PATIENT_ID_SYSTEM: "not a uri" })).toThrow(
      /FHIR_PATIENT_ID_SYSTEM: must be a URI/,
    );
  });

  it("takes MLLP over TLS only when asked for, with the client certificate and key together", () => {
    const hl7 = { HL7_HOST: "ris.example", HL7_PORT: "2575" };
    expect(loadConfig(hl7).HL7_TLS).toBe(false);
    expect(
      loadConfig({
        ...hl7,
        HL7_TLS: "1",
        HL7_TLS_CA: "/ca.pem",
        HL7_TLS_CERT: "/c.pem",
        HL7_TLS_KEY: "/k.pem",
      }),
    ).toMatchObject({ HL7_TLS: true, HL7_TLS_CA: "/ca.pem", HL7_TLS_CERT: "/c.pem" });
    expect(() => loadConfig({ ...hl7, HL7_TLS: "1", HL7_TLS_CERT: "/c.pem" })).toThrow(
      /HL7_TLS_KEY: HL7_TLS_CERT and HL7_TLS_KEY must be set together/,
    );
    expect(() => loadConfig({ ...hl7, HL7_TLS: "1", HL7_TLS_KEY: "/k.pem" })).toThrow(
      /HL7_TLS_CERT: HL7_TLS_CERT and HL7_TLS_KEY must be set together/,
    );
    // CA without HL7_TLS=1: a forgotten switch must not send the ORU in clear.
    expect(() => loadConfig({ ...hl7, HL7_TLS_CA: "/ca.pem" })).toThrow(/HL7_TLS: must be 1 when/);
    expect(() => loadConfig({ HL7_TLS: "1" })).toThrow(/HL7_HOST: must be set when HL7_TLS is/);
    expect(() => loadConfig({ ...hl7, HL7_TLS: "maybe" })).toThrow(/HL7_TLS/);
  });
});
