-- A radiologist's decision for each knee the AI did not grade (refused by the verifier, missing
-- from a bilateral view, or an arthroplasty), per signature.

-- CreateEnum
CREATE TYPE "MissingKneeDecision" AS ENUM ('GRADED', 'NOT_GRADABLE', 'NOT_PRESENT');

-- CreateTable
CREATE TABLE "ReviewMissingKnee" (
    "id" UUID NOT NULL,
    "reviewId" UUID NOT NULL,
    "instanceId" UUID NOT NULL,
    "laterality" "Laterality" NOT NULL,
    "aiCode" TEXT NOT NULL,
    "aiReason" TEXT NOT NULL,
    "decision" "MissingKneeDecision" NOT NULL,
    "radiologistGrade" INTEGER,
    "notGradableReason" TEXT,

    CONSTRAINT "ReviewMissingKnee_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "ReviewMissingKnee_reviewId_instanceId_laterality_key" ON "ReviewMissingKnee"("reviewId", "instanceId", "laterality");

-- AddForeignKey
ALTER TABLE "ReviewMissingKnee" ADD CONSTRAINT "ReviewMissingKnee_reviewId_fkey" FOREIGN KEY ("reviewId") REFERENCES "Review"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ReviewMissingKnee" ADD CONSTRAINT "ReviewMissingKnee_instanceId_fkey" FOREIGN KEY ("instanceId") REFERENCES "Instance"("id") ON DELETE CASCADE ON UPDATE CASCADE;
