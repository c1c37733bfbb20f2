
-- CreateEnum
CREATE TYPE "InstanceOutcome" AS ENUM ('GRADED', 'REFUSED', 'FAILED');

-- AlterTable
ALTER TABLE "GradingJob" ADD COLUMN     "modelStatus" TEXT,
ADD COLUMN     "providers" JSONB;

-- AlterTable
ALTER TABLE "KneeResult" ADD COLUMN     "cropPng" BYTEA,
ADD COLUMN     "heatmapPng" BYTEA,
ADD COLUMN     "lateralitySource" TEXT,
ADD COLUMN     "localisationScore" DOUBLE PRECISION,
ADD COLUMN     "lowConfidence" BOOLEAN NOT NULL DEFAULT false;

-- CreateTable
CREATE TABLE "InstanceGrading" (
    "id" UUID NOT NULL,
    "gradingJobId" UUID NOT NULL,
    "instanceId" UUID NOT NULL,
    "outcome" "InstanceOutcome" NOT NULL,
    "code" TEXT,
    "reason" TEXT,
    "warnings" JSONB NOT NULL DEFAULT '[]',
    "kneesFound" INTEGER NOT NULL DEFAULT 0,
    "timingsMs" JSONB NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "InstanceGrading_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "InstanceGrading_gradingJobId_instanceId_key" ON "InstanceGrading"("gradingJobId", "instanceId");

-- AddForeignKey
ALTER TABLE "InstanceGrading" ADD CONSTRAINT "InstanceGrading_gradingJobId_fkey" FOREIGN KEY ("gradingJobId") REFERENCES "GradingJob"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "InstanceGrading" ADD CONSTRAINT "InstanceGrading_instanceId_fkey" FOREIGN KEY ("instanceId") REFERENCES "Instance"("id") ON DELETE CASCADE ON UPDATE CASCADE;

