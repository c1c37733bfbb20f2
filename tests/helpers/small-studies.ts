/**
 * Many small bilateral knee studies (composed from knee-kl crops, one DX instance each) for tests
 * and benchmarks that need volume on a 2-core machine: 0.5 mm pixels instead of the usual 0.15,
 * so an image is 720 × 600 and grading one takes a fraction of a full-size radiograph's time.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { composeRadiograph, radiographDicom } from "@kneegrade/sample-radiographs";
import { SHARED_DATA } from "./paths.ts";
import { newUid } from "./studies.ts";

const VAL = `${SHARED_DATA}knee-kl/val/`;
/** One knee-kl validation crop per KL grade 0-4, the knees of composed test studies. */
export const SAMPLE_CROPS = [
  "0/9034812R.png",
  "1/9003380R.png",
  "2/9023348R.png",
  "3/9107980R.png",
  "4/9511862R.png",
].map((c) => `${VAL}${c}`);

export interface SmallStudy {
  studyInstanceUid: string;
  path: string;
}

export async function writeSmallStudies(dir: string, count: number, spacingMm = 0.5) {
  await mkdir(dir, { recursive: true });
  const studies: SmallStudy[] = [];
  for (let i = 0; i < count; i++) {
    const r = await composeRadiograph({
      widthMm: 360,
      heightMm: 300,
      spacingMm,
      seed: i + 1,
      knees: [
        { png: SAMPLE_CROPS[i % 5]!, xMm: 95, yMm: 150, sideMm: 90 },
        { png: SAMPLE_CROPS[(i + 2) % 5]!, xMm: 265, yMm: 150, sideMm: 90 },
      ],
    });
    const studyInstanceUid = newUid();
    const path = join(dir, `study-${i}.dcm`);
    await writeFile(path, radiographDicom(r, { studyInstanceUid }));
    studies.push({ studyInstanceUid, path });
  }
  return studies;
}
