/**
 * SR content items (PS3.3 C.17.3, Document Content Macro), one typed shape per value type as
 * highdicom's `CodeContentItem`, `NumContentItem`, `TextContentItem`…: each is the naturalized
 * dcmjs item it encodes to, so a document is a tree of these and nothing else. The documents and
 * templates (sr.ts, sr-templates.ts) build with the functions below, e.g. `item.code(...)`.
 */
import { CODES } from "./codes.ts";
import { type CodeSequenceItem, codeItem } from "./dataset.ts";
import type { Code, SourceImage } from "./types.ts";

export type RelationshipType =
  | "CONTAINS"
  | "HAS OBS CONTEXT"
  | "HAS CONCEPT MOD"
  | "HAS PROPERTIES"
  | "INFERRED FROM"
  | "SELECTED FROM";

interface Item<V extends string> {
  RelationshipType: RelationshipType;
  ValueType: V;
  /** The concept name; an IMAGE or SCOORD selected from or inferring a measurement may have none. */
  ConceptNameCodeSequence?: [CodeSequenceItem];
  ContentSequence?: ContentItem[];
}

export interface TextContentItem extends Item<"TEXT"> {
  TextValue: string;
}
export interface CodeContentItem extends Item<"CODE"> {
  ConceptCodeSequence: [CodeSequenceItem];
}
export interface NumContentItem extends Item<"NUM"> {
  MeasuredValueSequence: [
    { MeasurementUnitsCodeSequence: [CodeSequenceItem]; NumericValue: string },
  ];
}
export interface UidRefContentItem extends Item<"UIDREF"> {
  UID: string;
}
export interface PnameContentItem extends Item<"PNAME"> {
  PersonName: string;
}
export interface ContainerContentItem extends Item<"CONTAINER"> {
  ContinuityOfContent: "SEPARATE";
  ContentTemplateSequence?: [{ MappingResource: "DCMR"; TemplateIdentifier: string }];
}
export interface ImageContentItem extends Item<"IMAGE"> {
  ReferencedSOPSequence: [{ ReferencedSOPClassUID: string; ReferencedSOPInstanceUID: string }];
}
export interface ScoordContentItem extends Item<"SCOORD"> {
  GraphicType: "POLYLINE";
  GraphicData: number[];
}

export type ContentItem =
  | TextContentItem
  | CodeContentItem
  | NumContentItem
  | UidRefContentItem
  | PnameContentItem
  | ContainerContentItem
  | ImageContentItem
  | ScoordContentItem;

type ValueOf<I extends ContentItem> = Omit<I, keyof Item<string>>;

/** One content item: relationship and value type, concept name, value, then its children. */
function contentItem<I extends ContentItem>(
  relationship: RelationshipType,
  valueType: I["ValueType"],
  concept: Code | null,
  value: ValueOf<I>,
  children: ContentItem[] = [],
): I {
  const out: Item<string> = { RelationshipType: relationship, ValueType: valueType };
  if (concept) out.ConceptNameCodeSequence = [codeItem(concept)];
  Object.assign(out, value);
  if (children.length > 0) out.ContentSequence = children;
  return out as I;
}

export const text = (
  rel: RelationshipType,
  concept: Code,
  value: string,
  children: ContentItem[] = [],
) => contentItem<TextContentItem>(rel, "TEXT", concept, { TextValue: value }, children);

export const code = (
  rel: RelationshipType,
  concept: Code,
  value: Code,
  children: ContentItem[] = [],
) =>
  contentItem<CodeContentItem>(
    rel,
    "CODE",
    concept,
    { ConceptCodeSequence: [codeItem(value)] },
    children,
  );

export const uidref = (rel: RelationshipType, concept: Code, uid: string) =>
  contentItem<UidRefContentItem>(rel, "UIDREF", concept, { UID: uid });

export const pname = (rel: RelationshipType, concept: Code, name: string) =>
  contentItem<PnameContentItem>(rel, "PNAME", concept, { PersonName: name });

/** A CONTAINER of separate items, following the DCMR template `template` when given. */
export const container = (
  rel: RelationshipType,
  concept: Code,
  children: ContentItem[],
  template?: string,
) =>
  contentItem<ContainerContentItem>(
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

export const image = (rel: RelationshipType, concept: Code | null, source: SourceImage) =>
  contentItem<ImageContentItem>(rel, "IMAGE", concept, {
    ReferencedSOPSequence: [
      {
        ReferencedSOPClassUID: source.sopClassUid,
        ReferencedSOPInstanceUID: source.sopInstanceUid,
      },
    ],
  });

/** A closed POLYLINE on `source`, in its image pixels, which it is SELECTED FROM. */
export const scoord = (
  rel: RelationshipType,
  concept: Code | null,
  points: number[],
  source: SourceImage,
) =>
  contentItem<ScoordContentItem>(
    rel,
    "SCOORD",
    concept,
    { GraphicType: "POLYLINE", GraphicData: points },
    [image("SELECTED FROM", null, source)],
  );

/** NUM with a unitless value (UCUM "1"); DS holds at most 16 characters. */
export const num = (concept: Code, value: number, children: ContentItem[] = []) =>
  contentItem<NumContentItem>(
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
