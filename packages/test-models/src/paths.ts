/** The repository root, and the shared, read-only data set beside it (never copied into the repository). */
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../../..", import.meta.url));
export const SHARED_DATA = fileURLToPath(new URL("../../../../shared/data/", import.meta.url));
