/**
 * The password rule of the review accounts: at least 12 characters and not guessable — zxcvbn's
 * estimate (common passwords, dictionary words, keyboard walks, repeats, dates, the account's own
 * names) must reach score 3 ("safely unguessable": about 10^8 guesses or more).
 */
import zxcvbnCore from "@zxcvbn-ts/core";
import zxcvbnCommon from "@zxcvbn-ts/language-common";

const MIN_LENGTH = 12;
const MIN_SCORE = 3;

let estimator: InstanceType<typeof zxcvbnCore.ZxcvbnFactory> | undefined;

/** Why a password is refused, or null when it is acceptable. `userInputs`: the account's names. */
export function passwordProblem(password: string, userInputs: string[] = []): string | null {
  if (password.length < MIN_LENGTH) return `passwords need at least ${MIN_LENGTH} characters`;
  estimator ??= new zxcvbnCore.ZxcvbnFactory({
    dictionary: { ...zxcvbnCommon.dictionary },
    graphs: zxcvbnCommon.adjacencyGraphs,
  });
  // "Doe^Jane" is guessed as "doe", "jane", "janedoe" and "doejane" alike.
  const inputs = userInputs.flatMap((s) => {
    const parts = s
      .toLowerCase()
      .split(/[\^\s._-]+/)
      .filter((p) => p.length > 2);
    return [s.toLowerCase(), ...parts, parts.join(""), [...parts].reverse().join("")];
  });
  const r = estimator.check(password.slice(0, 256), inputs);
  if (r.score >= MIN_SCORE) return null;
  return "this password is too easy to guess (a common password, a pattern, or the account's own names): use a longer phrase of unrelated words";
}
