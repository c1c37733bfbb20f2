/**
 * A study recorded as the worker records a graded one, without running a model: its radiograph's
 * header spooled (the reporter reads the header only, so no pixels), the instance, a completed
 * grading job, and two knees — right KL 2, left KL 3. For the reporter's tests against real peers.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Config } from "@kneegrade/config";
import { QUEUES, studyRevisionJobId } from "@kneegrade/contracts";
import type { Db } from "@kneegrade/db";
import { instanceDigest } from "@kneegrade/dicom";
import dcmjs from "dcmjs";
import { newUid } from "./studies.ts";

export const DX = "1.2.840.10008.5.1.4.1.1.1.1";

export interface StudyUids {
  study: string;
  series: string;
  sop: string;
}

/** A DX knee radiograph's Part 10 header; `fields` (patient data, dates, accession) go into it as given. */
export function radiographHeader(uids: StudyUids, fields: Record<string, unknown>): Uint8Array {
  const { DicomDict, DicomMetaDictionary } = dcmjs.data;
  const dict = new DicomDict(
    DicomMetaDictionary.denaturalizeDataset({
      FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
      MediaStorageSOPClassUID: DX,
      MediaStorageSOPInstanceUID: uids.sop,
      TransferSyntaxUID: "1.2.840.10008.1.2.1",
      ImplementationClassUID: "1.2.826.0.1.3680043.8.498.1",
    }),
  );
  dict.dict = DicomMetaDictionary.denaturalizeDataset({
    SOPClassUID: DX,
    SOPInstanceUID: uids.sop,
    StudyInstanceUID: uids.study,
    SeriesInstanceUID: uids.series,
    Modality: "DX",
    PatientSex: "F",
    StudyID: "1",
    SeriesNumber: "1",
    InstanceNumber: "1",
    ViewPosition: "AP",
    BodyPartExamined: "KNEE",
    ...fields,
  });
  return new Uint8Array(dict.write());
}

export interface GradedStudyOptions {
  /** Header fields beyond the DX knee's own (patient, dates, accession). */
  header: Record<string, unknown>;
  /** Recorded on the study row as the listener records it. */
  accession?: string;
  modelVersion?: string;
}

export interface GradedStudy {
  studyId: string;
  studyInstanceUid: string;
  gradingJobId: string;
  kneeIds: { right: string; left: string };
}

export async function seedGradedStudy(
  db: Db,
  config: Config,
  options: GradedStudyOptions,
): Promise<GradedStudy> {
  const uids = { study: newUid(), series: newUid(), sop: newUid() };
  const bytes = radiographHeader(uids, options.header);
  const modelVersion = options.modelVersion ?? "test";
  const dir = join(config.SPOOL_DIR, "seed");
  await mkdir(dir, { recursive: true });
  const spoolPath = join(dir, `${uids.sop}.dcm`);
  await writeFile(spoolPath, bytes);
  const study = await db.study.create({
    data: {
      studyInstanceUid: uids.study,
      status: "GRADED",
      accessionNumber: options.accession,
      modality: "DX",
      series: { create: { seriesInstanceUid: uids.series, modality: "DX" } },
    },
    include: { series: true },
  });
  const instance = await db.instance.create({
    data: {
      sopInstanceUid: uids.sop,
      sopClassUid: DX,
      studyId: study.id,
      seriesId: study.series[0]!.id,
      transferSyntaxUid: "1.2.840.10008.1.2.1",
      spoolPath,
      digest: instanceDigest(bytes),
      sizeBytes: BigInt(bytes.length),
      callingAet: "MODALITY",
      revision: 1,
      routing: "KNEE",
      routingReason: "test",
      viewPosition: "AP",
    },
  });
  const job = await db.gradingJob.create({
    data: {
      jobId: studyRevisionJobId(QUEUES.gradeStudy, uids.study, 1),
      queue: QUEUES.gradeStudy,
      studyId: study.id,
      revision: 1,
      status: "COMPLETED",
      enqueuedAt: new Date(),
      finishedAt: new Date(),
      modelVersion,
      modelStatus: "candidate",
      instances: {
        create: { instanceId: instance.id, outcome: "GRADED", kneesFound: 2, timingsMs: {} },
      },
    },
  });
  const knee = (laterality: "RIGHT" | "LEFT", klGrade: number, x: number) =>
    db.kneeResult.create({
      data: {
        gradingJobId: job.id,
        instanceId: instance.id,
        laterality,
        klGrade,
        probabilities: [0, 1, 2, 3, 4].map((g) => (g === klGrade ? 0.8 : 0.05)),
        region: { x, y: 300, width: 600, height: 600 },
        lateralitySource: "image side and PatientOrientation (L\\F)",
        localisationScore: 0.9,
        modelVersion,
        timingsMs: {},
      },
    });
  const right = await knee("RIGHT", 2, 100);
  const left = await knee("LEFT", 3, 1300);
  return {
    studyId: study.id,
    studyInstanceUid: uids.study,
    gradingJobId: job.id,
    kneeIds: { right: right.id, left: left.id },
  };
}
