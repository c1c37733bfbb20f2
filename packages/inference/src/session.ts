/**
 * One onnxruntime session per ensemble member, on the first execution provider in the caller's
 * order of preference that can run it (each provider is tried alone, so a member that one provider
 * cannot run falls back to the next), checked against the member's manifest entry.
 */
import type { Logger } from "@kneegrade/log";
import * as ort from "onnxruntime-node";
import { InferenceError } from "./errors.ts";
import type { ManifestMember } from "./manifest.ts";

export interface SessionThreads {
  /** Threads inside one operator (onnxruntime's intraOpNumThreads); default: onnxruntime's. */
  intraOpThreads?: number;
  /** Threads across independent operators (interOpNumThreads); default: onnxruntime's. */
  interOpThreads?: number;
}

/** A member with its session: what the ensemble runs. */
export interface LoadedMember {
  spec: ManifestMember;
  session: ort.InferenceSession;
  provider: string;
  /** The member's token-map outputs (tokens_l1, tokens_l2, ...), in level order. */
  tokenOutputs: string[];
}

/**
 * Opens every member from its verified ONNX bytes. When one cannot be opened, the sessions already
 * created are released before the error is thrown.
 */
export async function openMembers(
  specs: readonly ManifestMember[],
  files: ReadonlyMap<string, Uint8Array>,
  providers: readonly string[],
  threads: SessionThreads,
  log: Logger,
): Promise<LoadedMember[]> {
  const loaded: LoadedMember[] = [];
  try {
    for (const spec of specs) {
      const bytes = files.get(spec.name)!;
      const { session, provider } = await createSession(spec, bytes, providers, threads, log);
      loaded.push({ spec, session, provider, tokenOutputs: tokenOutputs(spec) });
      checkSessionNames(spec, session);
    }
  } catch (error) {
    await Promise.allSettled(loaded.map((m) => m.session.release()));
    throw error;
  }
  return loaded;
}

function tokenOutputs(spec: ManifestMember): string[] {
  return spec.outputs
    .map((o) => o.name)
    .filter((n) => /^tokens_l\d+$/.test(n))
    .sort((a, b) => Number(a.slice(8)) - Number(b.slice(8)));
}

async function createSession(
  spec: ManifestMember,
  bytes: Uint8Array,
  providers: readonly string[],
  threads: SessionThreads,
  log: Logger,
): Promise<{ session: ort.InferenceSession; provider: string }> {
  const failures: string[] = [];
  for (const provider of providers) {
    try {
      const session = await ort.InferenceSession.create(bytes, {
        executionProviders: [provider],
        graphOptimizationLevel: "all",
        ...(threads.intraOpThreads ? { intraOpNumThreads: threads.intraOpThreads } : {}),
        ...(threads.interOpThreads ? { interOpNumThreads: threads.interOpThreads } : {}),
      });
      return { session, provider };
    } catch (error) {
      const reason = firstLine(error);
      failures.push(`${provider}: ${reason}`);
      log.warn(
        { event: "inference.provider-unavailable", member: spec.name, provider, reason },
        `execution provider ${provider} cannot run member ${spec.name}; trying the next one`,
      );
    }
  }
  throw new InferenceError(
    "NO_PROVIDER",
    `member ${spec.name}: none of the execution providers [${providers.join(", ")}] could ` +
      `create a session (${failures.join("; ")}). onnxruntime-node bundles "cpu" and "webgpu"; ` +
      `"cuda" needs its provider libraries.`,
  );
}

function checkSessionNames(spec: ManifestMember, session: ort.InferenceSession): void {
  if (!session.inputNames.includes(spec.input.name)) {
    throw new InferenceError(
      "MODEL_INVALID",
      `member ${spec.name}: the ONNX graph has inputs [${session.inputNames}], the manifest ` +
        `says ${spec.input.name}`,
    );
  }
  const missing = spec.outputs.map((o) => o.name).filter((n) => !session.outputNames.includes(n));
  if (missing.length > 0) {
    throw new InferenceError(
      "MODEL_INVALID",
      `member ${spec.name}: the ONNX graph lacks outputs [${missing}] listed in the manifest`,
    );
  }
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const line = text.split("\n").find((l) => l.trim() !== "") ?? text;
  return line.length > 600 ? `${line.slice(0, 600)}…` : line;
}
