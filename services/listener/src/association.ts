/**
 * Association negotiation of the Storage SCP: whether an association is accepted (calling and
 * called AE titles, the association cap) and which presentation contexts and transfer syntaxes.
 */
import {
  ACCEPTED_TRANSFER_SYNTAXES,
  ASSOCIATION_REJECT,
  RADIOGRAPH_SOP_CLASSES,
  SOP_CLASSES,
  TRANSFER_SYNTAXES,
} from "@kneegrade/dicom";
import dimse from "dcmjs-dimse";

const { PresentationContextResult } = dimse.constants;
type PresentationContext = dimse.association.PresentationContext;

export interface AssociationPolicy {
  calledAet: string;
  /** Empty: any calling AE title is accepted. */
  allowedCallingAets: string[];
  maxAssociations: number;
}

const ACCEPTED_ABSTRACT_SYNTAXES = new Set([SOP_CLASSES.verification, ...RADIOGRAPH_SOP_CLASSES]);
const ACCEPTED_TS = new Set(ACCEPTED_TRANSFER_SYNTAXES);

type Rejection = { result: number; source: number; reason: number; text: string };

/** Why an association must be rejected (A-ASSOCIATE-RJ parameters), or null to accept it. */
export function associationRejection(
  policy: AssociationPolicy,
  openAssociations: number,
  calling: string,
  called: string,
): Rejection | null {
  const { result, source, reason } = ASSOCIATION_REJECT;
  if (policy.allowedCallingAets.length > 0 && !policy.allowedCallingAets.includes(calling)) {
    return {
      result: result.permanent,
      source: source.serviceUser,
      reason: reason.callingAeNotRecognized,
      text: "calling AE title not allowed",
    };
  }
  if (called !== policy.calledAet) {
    return {
      result: result.permanent,
      source: source.serviceUser,
      reason: reason.calledAeNotRecognized,
      text: "called AE title not recognized",
    };
  }
  if (openAssociations >= policy.maxAssociations) {
    return {
      result: result.transient,
      source: source.serviceProviderPresentation,
      reason: reason.localLimitExceeded,
      text: "too many concurrent associations",
    };
  }
  return null;
}

/**
 * Accepts the first transfer syntax the peer proposes that kneegrade keeps as it is (so a
 * compressed image arrives compressed), except that explicit VR little endian is preferred over
 * implicit when both are offered: it keeps the VRs, and peers send files in it as they are.
 */
export function chooseTransferSyntax(proposed: string[]): string | undefined {
  const usable = proposed.filter((ts) => ACCEPTED_TS.has(ts));
  if (
    usable[0] === TRANSFER_SYNTAXES.implicitVrLittleEndian &&
    usable.includes(TRANSFER_SYNTAXES.explicitVrLittleEndian)
  ) {
    return TRANSFER_SYNTAXES.explicitVrLittleEndian;
  }
  return usable[0];
}

export function negotiate(context: PresentationContext): void {
  if (!ACCEPTED_ABSTRACT_SYNTAXES.has(context.getAbstractSyntaxUid())) {
    context.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
    return;
  }
  const syntax = chooseTransferSyntax(context.getTransferSyntaxUids());
  if (syntax) context.setResult(PresentationContextResult.Accept, syntax);
  else context.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
}
