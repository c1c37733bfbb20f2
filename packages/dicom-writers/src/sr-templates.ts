/**
 * The TID groups the SR documents are built of: observation context (TID 1204, 1001, 1002, 1004),
 * algorithm identification (TID 4019) and one Measurement Group per knee (TID 1501/1410) — the
 * AI's, a radiologist's in a signed revision, or a knee found but not graded.
 */
import {
  CODES,
  klGradeCode,
  kneeFindingCode,
  notGradableFindingCode,
  notGradedFindingCode,
} from "./codes.ts";
import { clip, referable } from "./dataset.ts";
import type { CodeContentItem, ContainerContentItem, ContentItem } from "./sr-content.ts";
import * as item from "./sr-content.ts";
import type { KneeDecision, KneeFinding, NotGradedKnee, ReportInput } from "./types.ts";
import { derivedUid } from "./uids.ts";

/** TID 1002: the radiologist who signed. */
function personObserver(name: string, organisation?: string): ContentItem[] {
  return [
    item.code("HAS OBS CONTEXT", CODES.observerType, CODES.person),
    item.pname("HAS OBS CONTEXT", CODES.personObserverName, name),
    ...(organisation
      ? [item.text("HAS OBS CONTEXT", CODES.personObserverOrganization, clip(organisation, 1024))]
      : []),
  ];
}

/**
 * TID 1204 and TID 1001/1002/1004: English; the observer is a device, kneegrade — and, in a signed
 * revision, first the radiologist who signed.
 */
export function languageAndObserver(input: ReportInput): ContentItem[] {
  const signer = input.signature;
  return [
    item.code("HAS CONCEPT MOD", CODES.language, CODES.english),
    ...(signer ? personObserver(signer.observerName, signer.organisation) : []),
    item.code("HAS OBS CONTEXT", CODES.observerType, CODES.device),
    item.uidref("HAS OBS CONTEXT", CODES.deviceObserverUid, input.deviceObserverUid),
    item.text("HAS OBS CONTEXT", CODES.deviceObserverName, "kneegrade"),
    item.text("HAS OBS CONTEXT", CODES.deviceObserverManufacturer, input.algorithm.manufacturer),
    item.text("HAS OBS CONTEXT", CODES.deviceObserverModelName, input.algorithm.name),
  ];
}

/** TID 4019 Algorithm Identification, in its row order (name, version, parameters, family). */
function algorithmIdentification(input: ReportInput): ContentItem[] {
  const a = input.algorithm;
  return [
    item.text("HAS CONCEPT MOD", CODES.algorithmName, a.name),
    item.text("HAS CONCEPT MOD", CODES.algorithmVersion, a.version),
    item.text(
      "HAS CONCEPT MOD",
      CODES.algorithmParameters,
      `model fingerprint ${a.modelFingerprint} (sha256 over the members' sha256, first 12 hex digits)`,
    ),
    item.text("HAS CONCEPT MOD", CODES.algorithmParameters, `model status ${a.modelStatus}`),
    item.text(
      "HAS CONCEPT MOD",
      CODES.algorithmParameters,
      `software version ${a.softwareVersion}`,
    ),
    item.code("HAS CONCEPT MOD", CODES.algorithmFamily, CODES.artificialIntelligence),
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
  item.code(
    "HAS CONCEPT MOD",
    CODES.findingSite,
    CODES.kneeJoint,
    knee.laterality === "U"
      ? []
      : [
          item.code(
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
  finding: CodeContentItem,
  algorithm: ContentItem[],
  measurements: (where: ContentItem[]) => ContentItem[],
): ContainerContentItem {
  const points = regionPolyline(knee);
  const where = points ? [item.scoord("INFERRED FROM", null, points, knee.source)] : [];
  const children: ContentItem[] = [
    item.text("HAS OBS CONTEXT", CODES.trackingIdentifier, label),
    item.uidref("HAS OBS CONTEXT", CODES.trackingUniqueIdentifier, uid),
    finding,
    findingSite(knee),
    ...algorithm,
    ...measurements(where),
  ];
  if (points) {
    children.push(item.scoord("CONTAINS", CODES.imageRegion, points, knee.source));
  } else if (referable(knee.source)) {
    children.push(item.image("CONTAINS", CODES.sourceOfMeasurement, knee.source));
  }
  return item.container("CONTAINS", CODES.measurementGroup, children, points ? "1410" : "1501");
}

/** The localisation score: the first measurement, inferred from the region where one is known. */
const localisationScore = (knee: KneeFinding | NotGradedKnee, where: ContentItem[]) =>
  item.num(CODES.localisationScore, knee.localisationScore, where);

/**
 * The AI's Measurement Group of a graded knee: its grade as the Finding, the localisation score and
 * the five probabilities. A signed revision keeps it unchanged, as the AI's result for reference.
 */
export function measurementGroup(
  input: ReportInput,
  knee: KneeFinding,
  label: string,
): ContainerContentItem {
  const uid = trackingUid(knee, input.knees);
  const finding = item.code(
    "CONTAINS",
    CODES.finding,
    kneeFindingCode(knee.grade, knee.laterality, "ai"),
  );
  return kneeGroup(knee, label, uid, finding, algorithmIdentification(input), (where) => [
    localisationScore(knee, where),
    ...knee.probabilities.map((p, grade) =>
      item.num(CODES.probability, p, [
        item.code("HAS CONCEPT MOD", CODES.klGrade, klGradeCode(grade)),
      ]),
    ),
  ]);
}

/**
 * A knee found but not graded (arthroplasty): its Measurement Group has no KL grade and no
 * probabilities, only the finding (coded: "Left knee, knee arthroplasty — not graded") and the
 * localisation score.
 */
export function notGradedGroup(
  input: ReportInput,
  knee: NotGradedKnee,
  label: string,
): ContainerContentItem {
  const uid = trackingUid(knee, input.notGraded ?? []);
  const finding = item.code(
    "CONTAINS",
    CODES.finding,
    notGradedFindingCode(knee.code, knee.laterality),
  );
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
export function radiologistGroup(
  input: ReportInput,
  knee: KneeFinding,
  label: string,
  decision: KneeDecision,
): ContainerContentItem {
  const finding = item.code(
    "CONTAINS",
    CODES.finding,
    decision.grade === null
      ? notGradableFindingCode(knee.laterality)
      : kneeFindingCode(decision.grade, knee.laterality, "radiologist"),
  );
  return kneeGroup(knee, label, trackingUid(knee, input.knees), finding, [], () => []);
}
