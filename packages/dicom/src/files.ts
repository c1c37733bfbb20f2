/** The files a command was given: paths as given, directories walked. */
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";

/**
 * Every file under the given paths, in order: a path that is not a directory is kept as given; a
 * directory contributes its regular files recursively, names sorted, hidden entries skipped.
 */
export async function collectFiles(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (p: string, top: boolean) => {
    const s = await stat(p);
    if (s.isDirectory()) {
      for (const name of (await readdir(p)).sort()) {
        if (!name.startsWith(".")) await walk(join(p, name), false);
      }
    } else if (top || s.isFile()) {
      out.push(p);
    }
  };
  for (const p of paths) await walk(p, true);
  return out;
}
