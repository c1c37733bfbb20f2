import { Writable } from "node:stream";
import { expect, it } from "vitest";
import { createLogger } from "./index.ts";

it("writes JSON lines with the event name and removes patient fields at the top level and one level down", () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  const log = createLogger("test", "info", sink);
  log.info(
    {
      event: "instance.stored",
      studyInstanceUid: "1.2.3",
      PatientName: "Doe^Jane",
      header: { PatientID: "12345", PatientBirthDate: "19790408", AccessionNumber: "A1" },
    },
    "stored",
  );
  expect(lines).toHaveLength(1);
  const entry = JSON.parse(lines[0]!);
  expect(entry).toMatchObject({
    event: "instance.stored",
    studyInstanceUid: "1.2.3",
    msg: "stored",
  });
  expect(lines[0]).not.toMatch(/Doe|12345|19790408|"A1"/);
});
