/**
 * The structured reports: a Comprehensive SR following TID 1500 "Imaging Measurement Report" as the
 * IHE AI Results profile uses it, and a Basic Text SR (TID 2000) with the report text only, for
 * dictation systems: the documents, built of the TID groups in sr-templates.ts, which are built of
 * the typed content items in sr-content.ts. The content tree is in README.md.
 */
import { CODES } from "./codes.ts";
import {
  codeItem,
  codingSchemeIdentification,
  type Dataset,
  sourceImages,
  writePart10,
} from "./dataset.ts";
import type { ContentItem } from "./sr-content.ts";
import * as item from "./sr-content.ts";
import { SR_SOP_CLASSES, srDocument, validate } from "./sr-document.ts";
import {
  languageAndObserver,
  measurementGroup,
  notGradedGroup,
  radiologistGroup,
} from "./sr-templates.ts";
import { orderedKnees, reportLines } from "./text.ts";
import type { Code, ReportInput } from "./types.ts";
import { derivedUids } from "./uids.ts";

/** UT text with DICOM line breaks (CR LF). */
const crlf = (lines: string[]) => lines.join("\r\n");

/**
 * The Measurement Groups, one per knee in reading order: the AI's; in a signed revision the
 * radiologist's first, then the AI's kept for reference; then the knees found but not graded.
 */
function imagingMeasurements(input: ReportInput): ContentItem[] {
  const signer = input.signature;
  return [
    ...orderedKnees(input.knees).flatMap(({ knee, tracking }) => {
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
  ];
}

/** The Image Library (TID 1600): every image the knees were found on. */
function imageLibrary(input: ReportInput): ContentItem {
  const images = sourceImages(input);
  return item.container(
    "CONTAINS",
    CODES.imageLibrary,
    images.length > 0
      ? [
          item.container(
            "CONTAINS",
            CODES.imageLibraryGroup,
            images.map((image) => item.image("CONTAINS", null, image)),
          ),
        ]
      : [],
  );
}

/** The Comprehensive SR (TID 1500), Part 10, Explicit VR Little Endian. */
export function writeComprehensiveSr(input: ReportInput): Uint8Array {
  validate(input);
  const lines = reportLines(input);
  const ds = srDocument(
    input,
    SR_SOP_CLASSES.comprehensive,
    input.sopInstanceUid,
    input.instanceNumber,
  );
  return writeDocument(ds, CODES.imagingMeasurementReport, "1500", [
    ...languageAndObserver(input),
    item.code(
      "HAS CONCEPT MOD",
      CODES.procedureReported,
      input.procedureReported ?? CODES.imagingProcedure,
    ),
    imageLibrary(input),
    item.container("CONTAINS", CODES.imagingMeasurements, imagingMeasurements(input)),
    item.container("CONTAINS", CODES.qualitativeEvaluations, [
      item.text("CONTAINS", CODES.findings, crlf(input.signature?.findings ?? lines.findings)),
      item.text(
        "CONTAINS",
        CODES.impressions,
        crlf(input.signature?.impression ?? lines.impression),
      ),
    ]),
  ]);
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
  return writeDocument(ds, CODES.diagnosticImagingReport, "2000", [
    ...languageAndObserver(input),
    item.container(
      "CONTAINS",
      CODES.findings,
      lines.findings.map((line) => item.text("CONTAINS", CODES.finding, line)),
    ),
    item.container(
      "CONTAINS",
      CODES.impressions,
      lines.impression.map((line) => item.text("CONTAINS", CODES.impression, line)),
    ),
  ]);
}

/**
 * The document's content tree on its SR header `ds`, as Part 10: a root CONTAINER titled `title`
 * (content items separate) following DCMR template `templateId`, with the coding schemes it uses.
 */
function writeDocument(
  ds: Dataset,
  title: Code,
  templateId: string,
  content: ContentItem[],
): Uint8Array {
  Object.assign(ds, {
    ValueType: "CONTAINER",
    ConceptNameCodeSequence: [codeItem(title)],
    ContinuityOfContent: "SEPARATE",
    ContentTemplateSequence: [{ MappingResource: "DCMR", TemplateIdentifier: templateId }],
    ContentSequence: content,
  });
  ds.CodingSchemeIdentificationSequence = codingSchemeIdentification(ds);
  return writePart10(ds);
}
