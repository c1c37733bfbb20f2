/**
 * The structured reports: a Comprehensive SR following TID 1500 "Imaging Measurement Report" as the
 * IHE AI Results profile uses it, and a Basic Text SR (TID 2000) with the report text only, for
 * dictation systems. The content tree is in README.md.
 */
import {
  CODES,
  klGradeCode,
  kneeFindingCode,
  notGradableFindingCode,
  notGradedFindingCode,
} from "./codes.ts";
import {
  clip,
  codeItem,
  codingSchemeIdentification,
  contributingEquipment,
  type Dataset,
  dicomDateTime,
  patientAndStudy,
  referable,
  referencesBySeries,
  sourceImages,
  writePart10,
} from "./dataset.ts";
import { isTestModel, orderedKnees, reportLines } from "./text.ts";
import type {
  Code,
  KneeDecision,
  KneeFinding,
  NotGradedKnee,
  ReportInput,
  SourceImage,
} from "./types.ts";
import { derivedUid, derivedUids } from "./uids.ts";

export const SR_SOP_CLASSES = {
  basicText: "1.2.840.10008.5.1.4.1.1.88.11",
  comprehensive: "1.2.840.10008.5.1.4.1.1.88.33",
} as const;

type Relationship =
  | "CONTAINS"
  | "HAS OBS CONTEXT"
  | "HAS CONCEPT MOD"
  | "HAS PROPERTIES"
  | "INFERRED FROM"
  | "SELECTED FROM";

/** One SR content item (Document Content Macro). */
function contentItem(
  relationship: Relationship,
  valueType: string,
  concept: Code | null,
  value: Dataset,
  children: Dataset[] = [],
): Dataset {
  const item: Dataset = { RelationshipType: relationship, ValueType: valueType };
  if (concept) item.ConceptNameCodeSequence = [codeItem(concept)];
  Object.assign(item, value);
  if (children.length > 0) item.ContentSequence = children;
  return item;
}

const text = (rel: Relationship, concept: Code, value: string, children: Dataset[] = []) =>
  contentItem(rel, "TEXT", concept, { TextValue: value }, children);
const code = (rel: Relationship, concept: Code, value: Code, children: Dataset[] = []) =>
  contentItem(rel, "CODE", concept, { ConceptCodeSequence: [codeItem(value)] }, children);
const uidref = (rel: Relationship, concept: Code, uid: string) =>
  contentItem(rel, "UIDREF", concept, { UID: uid });
const pname = (rel: Relationship, concept: Code, name: string) =>
  contentItem(rel, "PNAME", concept, { PersonName: name });
const container = (
  rel: Relationship,
  concept: Code,
  children: Dataset[],
  template?: string,
): Dataset =>
  contentItem(
    rel,
    "CONTAINER",
    concept,
    {
      ContinuityOfContent: "SEPARATE",
      ...(template
        ? { ContentTemplateSequence: [{ MappingResource: "DCMR", TemplateIdentifier: template }] }
        : {}),
    },
    children,
  );
const imageRef = (rel: Relationship, concept: Code | null, image: SourceImage) =>
  contentItem(rel, "IMAGE", concept, {
    ReferencedSOPSequence: [
      { ReferencedSOPClassUID: image.sopClassUid, ReferencedSOPInstanceUID: image.sopInstanceUid },
    ],
  });
/** NUM with a unitless value (UCUM "1"); DS holds at most 16 characters. */
const num = (concept: Code, value: number, children: Dataset[] = []) =>
  contentItem(
    "CONTAINS",
    "NUM",
    concept,
    {
      MeasuredValueSequence: [
        {
          MeasurementUnitsCodeSequence: [codeItem(CODES.noUnits)],
          NumericValue: decimalString(value),
        },
      ],
    },
    children,
  );

/** A DS value of at most 16 characters (6 decimals are plenty for a probability). */
export function decimalString(value: number): string {
  if (!Number.isFinite(value)) throw new RangeError(`not a finite number: ${value}`);
  const s = value.toFixed(6).replace(/\.?0+$/, "");
  return s === "-0" ? "0" : s;
}

/** UT text with DICOM line breaks (CR LF). */
const crlf = (lines: string[]) => lines.join("\r\n");

/** TID 1002: the radiologist who signed. */
function personObserver(name: string, organisation?: string): Dataset[] {
  return [
    code("HAS OBS CONTEXT", CODES.observerType, CODES.person),
    pname("HAS OBS CONTEXT", CODES.personObserverName, name),
    ...(organisation
      ? [text("HAS OBS CONTEXT", CODES.personObserverOrganization, clip(organisation, 1024))]
      : []),
  ];
}

/**
 * TID 1204 and TID 1001/1002/1004: English; the observer is a device, kneegrade — and, in a signed
 * revision, first the radiologist who signed.
 */
function languageAndObserver(input: ReportInput): Dataset[] {
  const signer = input.signature;
  return [
    code("HAS CONCEPT MOD", CODES.language, CODES.english),
    ...(signer ? personObserver(signer.observerName, signer.organisation) : []),
    code("HAS OBS CONTEXT", CODES.observerType, CODES.device),
    uidref("HAS OBS CONTEXT", CODES.deviceObserverUid, input.deviceObserverUid),
    text("HAS OBS CONTEXT", CODES.deviceObserverName, "kneegrade"),
    text("HAS OBS CONTEXT", CODES.deviceObserverManufacturer, input.algorithm.manufacturer),
    text("HAS OBS CONTEXT", CODES.deviceObserverModelName, input.algorithm.name),
  ];
}

/** TID 4019 Algorithm Identification, in its row order (name, version, parameters, family). */
function algorithmIdentification(input: ReportInput): Dataset[] {
  const a = input.algorithm;
  return [
    text("HAS CONCEPT MOD", CODES.algorithmName, a.name),
    text("HAS CONCEPT MOD", CODES.algorithmVersion, a.version),
    text(
      "HAS CONCEPT MOD",
      CODES.algorithmParameters,
      `model fingerprint ${a.modelFingerprint} (sha256 over the members' sha256, first 12 hex digits)`,
    ),
    text("HAS CONCEPT MOD", CODES.algorithmParameters, `model status ${a.modelStatus}`),
    text("HAS CONCEPT MOD", CODES.algorithmParameters, `software version ${a.softwareVersion}`),
    code("HAS CONCEPT MOD", CODES.algorithmFamily, CODES.artificialIntelligence),
  ];
}

/**
 * The knee's Tracking Unique Identifier: derived from its image and side (and its rank among
 * knees of that image with that side), so re-grading the same image tracks the same knee.
 */
export function trackingUid<K extends KneeFinding | NotGradedKnee>(
  knee: K,
  knees: readonly K[],
): string {
  const rank = knees
    .filter((k) => k.source.sopInstanceUid === knee.source.sopInstanceUid)
    .filter((k) => k.laterality === knee.laterality)
    .indexOf(knee);
  return derivedUid(knee.source.sopInstanceUid, `knee:${knee.laterality}:${rank}`);
}

/** Finding Site: knee joint, with its laterality when known. */
const findingSite = (knee: KneeFinding | NotGradedKnee) =>
  code(
    "HAS CONCEPT MOD",
    CODES.findingSite,
    CODES.kneeJoint,
    knee.laterality === "U"
      ? []
      : [
          code(
            "HAS CONCEPT MOD",
            CODES.laterality,
            knee.laterality === "R" ? CODES.right : CODES.left,
          ),
        ],
  );

/** The knee's region: the closed crop square in image pixels, or null when it cannot be referenced. */
function regionPolyline(knee: KneeFinding | NotGradedKnee): number[] | null {
  // A knee whose image cannot be referenced (series unknown) keeps its grade, without a reference.
  const r = referable(knee.source) ? knee.region : null;
  if (!r) return null;
  // Image-relative coordinates: (0,0) is the top left corner of the top left pixel. The crop
  // square may reach past the image's top or left edge: clamped there.
  const x0 = Math.max(0, r.x);
  const y0 = Math.max(0, r.y);
  const x1 = r.x + r.width;
  const y1 = r.y + r.height;
  return [x0, y0, x1, y0, x1, y1, x0, y1, x0, y0];
}

const scoord = (rel: Relationship, concept: Code | null, points: number[], image: SourceImage) =>
  contentItem(rel, "SCOORD", concept, { GraphicType: "POLYLINE", GraphicData: points }, [
    imageRef("SELECTED FROM", null, image),
  ]);

/**
 * One knee's Measurement Group. Rows in the order TID 1501 lists them (TID 1410 when the region
 * is known: its Image Region SCOORD, then TID 1419's rows): tracking (TID 4108), Finding, Finding
 * Site with Laterality, the algorithm (TID 4019) where an algorithm made the finding, the
 * measurements (TID 300), then where on the image.
 *
 * Viewers built on Cornerstone's SR adapters (OHIF) take such a group as a rectangle ROI: they
 * need the Image Region as a closed 5-point POLYLINE among the group's own items, and take the
 * coordinates from the first NUM's INFERRED FROM SCOORD (TID 300 → TID 320), and label the
 * measurement with the Finding's meaning.
 */
function kneeGroup(
  knee: KneeFinding | NotGradedKnee,
  label: string,
  uid: string,
  finding: Dataset,
  algorithm: Dataset[],
  measurements: (where: Dataset[]) => Dataset[],
): Dataset {
  const points = regionPolyline(knee);
  const where = points ? [scoord("INFERRED FROM", null, points, knee.source)] : [];
  const children: Dataset[] = [
    text("HAS OBS CONTEXT", CODES.trackingIdentifier, label),
    uidref("HAS OBS CONTEXT", CODES.trackingUniqueIdentifier, uid),
    finding,
    findingSite(knee),
    ...algorithm,
    ...measurements(where),
  ];
  if (points) {
    children.push(scoord("CONTAINS", CODES.imageRegion, points, knee.source));
  } else if (referable(knee.source)) {
    children.push(imageRef("CONTAINS", CODES.sourceOfMeasurement, knee.source));
  }
  return container("CONTAINS", CODES.measurementGroup, children, points ? "1410" : "1501");
}

/** The localisation score: the first measurement, inferred from the region where one is known. */
const localisationScore = (knee: KneeFinding | NotGradedKnee, where: Dataset[]) =>
  num(CODES.localisationScore, knee.localisationScore, where);

/**
 * The AI's Measurement Group of a graded knee: its grade as the Finding, the localisation score and
 * the five probabilities. A signed revision keeps it unchanged, as the AI's result for reference.
 */
function measurementGroup(input: ReportInput, knee: KneeFinding, label: string): Dataset {
  const uid = trackingUid(knee, input.knees);
  const finding = code(
    "CONTAINS",
    CODES.finding,
    kneeFindingCode(knee.grade, knee.laterality, "ai"),
  );
  return kneeGroup(knee, label, uid, finding, algorithmIdentification(input), (where) => [
    localisationScore(knee, where),
    ...knee.probabilities.map((p, grade) =>
      num(CODES.probability, p, [code("HAS CONCEPT MOD", CODES.klGrade, klGradeCode(grade))]),
    ),
  ]);
}

/**
 * A knee found but not graded (arthroplasty): its Measurement Group has no KL grade and no
 * probabilities, only the finding (coded: "Left knee, knee arthroplasty — not graded") and the
 * localisation score.
 */
function notGradedGroup(input: ReportInput, knee: NotGradedKnee, label: string): Dataset {
  const uid = trackingUid(knee, input.notGraded ?? []);
  const finding = code("CONTAINS", CODES.finding, notGradedFindingCode(knee.code, knee.laterality));
  return kneeGroup(knee, label, uid, finding, algorithmIdentification(input), (where) => [
    localisationScore(knee, where),
  ]);
}

/**
 * The radiologist's finding on one knee in a signed revision (TID 1410/1501): the same tracking
 * UID as the AI's group, the radiologist's grade — or "not gradable" (the reason is in the report
 * text) — on the knee's region. No algorithm identification: the document's person observer, the
 * verifying radiologist, made this finding.
 */
function radiologistGroup(
  input: ReportInput,
  knee: KneeFinding,
  label: string,
  decision: KneeDecision,
): Dataset {
  const finding = code(
    "CONTAINS",
    CODES.finding,
    decision.grade === null
      ? notGradableFindingCode(knee.laterality)
      : kneeFindingCode(decision.grade, knee.laterality, "radiologist"),
  );
  return kneeGroup(knee, label, trackingUid(knee, input.knees), finding, [], () => []);
}

export function seriesDescription(input: ReportInput, kind: "report" | "images"): string {
  // LO: at most 64 characters (and 64 UTF-8 bytes for strict validators).
  if (input.signature && kind === "report") {
    return isTestModel(input)
      ? "TEST MODEL – signed report (kneegrade review)"
      : "Signed report (kneegrade review)";
  }
  if (isTestModel(input)) {
    return `TEST MODEL – NOT FOR CLINICAL USE – AI ${kind === "report" ? "result" : "images"} (kneegrade)`;
  }
  return `AI result${kind === "report" ? "" : " images"} (kneegrade) – requires review`;
}

/** SR Document Series, General Equipment, SR Document General and SOP Common attributes. */
function srDocument(
  input: ReportInput,
  sopClassUid: string,
  sopInstanceUid: string,
  instanceNumber: number,
): Dataset {
  const { date, time, offset } = dicomDateTime(input.contentDateTime);
  const images = sourceImages(input);
  const ds: Dataset = {
    SpecificCharacterSet: "ISO_IR 192",
    InstanceCreationDate: date,
    InstanceCreationTime: time,
    SOPClassUID: sopClassUid,
    SOPInstanceUID: sopInstanceUid,
    ContentDate: date,
    ContentTime: time,
    Modality: "SR",
    Manufacturer: clip(input.algorithm.manufacturer, 64),
    TimezoneOffsetFromUTC: offset,
    SeriesDescription: clip(seriesDescription(input, "report"), 64),
    ManufacturerModelName: clip(input.algorithm.name, 64),
    SoftwareVersions: clip(input.algorithm.softwareVersion, 64),
    ...patientAndStudy(input),
    SeriesInstanceUID: input.seriesInstanceUid,
    SeriesNumber: input.seriesNumber,
    InstanceNumber: instanceNumber,
    ReferencedPerformedProcedureStepSequence: [],
    PerformedProcedureCodeSequence: [],
    ContributingEquipmentSequence: contributingEquipment(input),
    VerificationFlag: "UNVERIFIED",
    ...completion(input),
  };
  const signer = input.signature;
  if (signer) {
    const at = dicomDateTime(signer.dateTime);
    ds.VerificationFlag = "VERIFIED";
    ds.VerifyingObserverSequence = [
      {
        VerifyingObserverName: clip(signer.observerName, 64),
        VerifyingObserverIdentificationCodeSequence: [],
        VerifyingOrganization: clip(signer.organisation, 64),
        VerificationDateTime: `${at.date}${at.time}${at.offset}`,
      },
    ];
    ds.PredecessorDocumentsSequence = [
      {
        StudyInstanceUID: input.context.studyInstanceUid,
        ReferencedSeriesSequence: referencesBySeries([signer.predecessor]),
      },
    ];
  }
  if (input.institutionName) ds.InstitutionName = clip(input.institutionName, 64);
  if (images.length > 0) {
    ds.CurrentRequestedProcedureEvidenceSequence = [
      {
        StudyInstanceUID: input.context.studyInstanceUid,
        ReferencedSeriesSequence: referencesBySeries(images),
      },
    ];
  }
  return ds;
}

/**
 * COMPLETE when every image of the study was graded; PARTIAL (with the reason) when some image
 * could not be, or no knee was graded: the AI's content does not cover the whole study.
 */
function completion(input: ReportInput): Dataset {
  const n = input.ungraded.length;
  const k = input.notGraded?.length ?? 0;
  if (n === 0 && k === 0 && input.knees.length > 0) return { CompletionFlag: "COMPLETE" };
  const parts: string[] = [];
  if (k > 0)
    parts.push(
      k === 1 ? "1 knee not graded (arthroplasty)" : `${k} knees not graded (arthroplasty)`,
    );
  if (n > 0) parts.push(n === 1 ? "1 image not graded" : `${n} images not graded`);
  if (parts.length === 0) parts.push("no knee graded");
  return { CompletionFlag: "PARTIAL", CompletionFlagDescription: clip(parts.join("; "), 64) };
}

/** The Comprehensive SR (TID 1500), Part 10, Explicit VR Little Endian. */
export function writeComprehensiveSr(input: ReportInput): Uint8Array {
  validate(input);
  const lines = reportLines(input);
  const images = sourceImages(input);
  const ds = srDocument(
    input,
    SR_SOP_CLASSES.comprehensive,
    input.sopInstanceUid,
    input.instanceNumber,
  );
  Object.assign(ds, {
    ValueType: "CONTAINER",
    ConceptNameCodeSequence: [codeItem(CODES.imagingMeasurementReport)],
    ContinuityOfContent: "SEPARATE",
    ContentTemplateSequence: [{ MappingResource: "DCMR", TemplateIdentifier: "1500" }],
    ContentSequence: [
      ...languageAndObserver(input),
      code(
        "HAS CONCEPT MOD",
        CODES.procedureReported,
        input.procedureReported ?? CODES.imagingProcedure,
      ),
      container(
        "CONTAINS",
        CODES.imageLibrary,
        images.length > 0
          ? [
              container(
                "CONTAINS",
                CODES.imageLibraryGroup,
                images.map((image) => imageRef("CONTAINS", null, image)),
              ),
            ]
          : [],
      ),
      container("CONTAINS", CODES.imagingMeasurements, [
        ...orderedKnees(input.knees).flatMap(({ knee, tracking }) => {
          const signer = input.signature;
          if (!signer) return [measurementGroup(input, knee, tracking)];
          const decision = signer.knees[input.knees.indexOf(knee)];
          if (!decision) throw new RangeError(`no radiologist decision for the ${tracking}`);
          return [
            radiologistGroup(input, knee, `${tracking}, radiologist`, decision),
            measurementGroup(input, knee, `${tracking}, AI result`),
          ];
        }),
        ...orderedKnees(input.notGraded ?? []).map(({ knee, tracking }) =>
          notGradedGroup(input, knee, tracking),
        ),
      ]),
      container("CONTAINS", CODES.qualitativeEvaluations, [
        text("CONTAINS", CODES.findings, crlf(input.signature?.findings ?? lines.findings)),
        text("CONTAINS", CODES.impressions, crlf(input.signature?.impression ?? lines.impression)),
      ]),
    ],
  });
  ds.CodingSchemeIdentificationSequence = codingSchemeIdentification(ds);
  return writePart10(ds);
}

/**
 * The Basic Text SR (TID 2000): the report text only, one TEXT item per statement, for dictation
 * systems. Same series as the Comprehensive SR, instance number + 1, its SOP Instance UID derived
 * from the Comprehensive SR's (see derivedUids).
 */
export function writeBasicTextSr(input: ReportInput): Uint8Array {
  validate(input);
  const lines = reportLines(input);
  const uids = derivedUids(input).basicTextSr;
  const ds = srDocument(
    input,
    SR_SOP_CLASSES.basicText,
    uids.sopInstanceUid,
    input.instanceNumber + 1,
  );
  Object.assign(ds, {
    ValueType: "CONTAINER",
    ConceptNameCodeSequence: [codeItem(CODES.diagnosticImagingReport)],
    ContinuityOfContent: "SEPARATE",
    ContentTemplateSequence: [{ MappingResource: "DCMR", TemplateIdentifier: "2000" }],
    ContentSequence: [
      ...languageAndObserver(input),
      container(
        "CONTAINS",
        CODES.findings,
        lines.findings.map((line) => text("CONTAINS", CODES.finding, line)),
      ),
      container(
        "CONTAINS",
        CODES.impressions,
        lines.impression.map((line) => text("CONTAINS", CODES.impression, line)),
      ),
    ],
  });
  ds.CodingSchemeIdentificationSequence = codingSchemeIdentification(ds);
  return writePart10(ds);
}

/** Refuses inputs that would write a wrong report. */
export function validate(input: ReportInput): void {
  const signer = input.signature;
  if (signer) {
    if (signer.knees.length !== input.knees.length) {
      throw new RangeError(
        `a signature needs one decision per knee: ${signer.knees.length} for ${input.knees.length}`,
      );
    }
    for (const d of signer.knees) {
      if (d.grade === null ? d.notGradableReason.trim() === "" : !klGrade(d.grade)) {
        throw new RangeError(
          d.grade === null
            ? "a knee marked not gradable needs a reason"
            : `Kellgren-Lawrence grade out of range: ${d.grade}`,
        );
      }
    }
    if (signer.observerName.trim() === "") throw new RangeError("a signature needs a name");
  }
  for (const knee of input.knees) {
    if (!klGrade(knee.grade)) {
      throw new RangeError(`Kellgren-Lawrence grade out of range: ${knee.grade}`);
    }
    if (knee.probabilities.length !== 5 || knee.probabilities.some((p) => !(p >= 0 && p <= 1))) {
      throw new RangeError(
        `expected 5 probabilities in 0..1, got [${knee.probabilities.join(", ")}]`,
      );
    }
  }
}

const klGrade = (g: number) => Number.isInteger(g) && g >= 0 && g <= 4;
