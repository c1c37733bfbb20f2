/** Writes packages/contracts/evaluation.schema.json from the zod schema (`npm run contracts:schema`). */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { evaluationJsonSchema } from "./evaluation.ts";

const file = fileURLToPath(new URL("../evaluation.schema.json", import.meta.url));
writeFileSync(file, evaluationJsonSchema());
console.log(`wrote ${file}`);
