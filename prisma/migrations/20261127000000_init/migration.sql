-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "public";

-- CreateEnum
CREATE TYPE "StudyStatus" AS ENUM ('RECEIVING', 'QUEUED', 'GRADING', 'GRADED', 'REPORTED', 'FAILED', 'REFUSED');

-- CreateEnum
CREATE TYPE "RoutingDecision" AS ENUM ('KNEE', 'NOT_KNEE');

-- CreateEnum
CREATE TYPE "JobStatus" AS ENUM ('PENDING', 'QUEUED', 'ACTIVE', 'COMPLETED', 'FAILED');

-- CreateEnum
CREATE TYPE "Laterality" AS ENUM ('LEFT', 'RIGHT', 'UNKNOWN');

-- CreateEnum
CREATE TYPE "DeliveryStatus" AS ENUM ('PENDING', 'SENT', 'FAILED');

-- CreateTable
CREATE TABLE "Study" (
    "id" UUID NOT NULL,
    "studyInstanceUid" TEXT NOT NULL,
    "status" "StudyStatus" NOT NULL DEFAULT 'RECEIVING',
    "revision" INTEGER NOT NULL DEFAULT 1,
    "statusReason" TEXT,
    "accessionNumber" TEXT,
    "modality" TEXT,
    "firstReceivedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "lastReceivedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Study_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Series" (
    "id" UUID NOT NULL,
    "seriesInstanceUid" TEXT NOT NULL,
    "studyId" UUID NOT NULL,
    "modality" TEXT,
    "bodyPartExamined" TEXT,
    "seriesDescription" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Series_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Instance" (
    "id" UUID NOT NULL,
    "sopInstanceUid" TEXT NOT NULL,
    "sopClassUid" TEXT NOT NULL,
    "studyId" UUID NOT NULL,
    "seriesId" UUID NOT NULL,
    "transferSyntaxUid" TEXT NOT NULL,
    "spoolPath" TEXT,
    "sha256" TEXT NOT NULL,
    "sizeBytes" BIGINT NOT NULL,
    "callingAet" TEXT NOT NULL,
    "receivedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "duplicateCount" INTEGER NOT NULL DEFAULT 0,
    "revision" INTEGER NOT NULL,
    "routing" "RoutingDecision" NOT NULL,
    "routingReason" TEXT NOT NULL,
    "imageLaterality" TEXT,
    "viewPosition" TEXT,

    CONSTRAINT "Instance_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "GradingJob" (
    "id" UUID NOT NULL,
    "jobId" TEXT NOT NULL,
    "queue" TEXT NOT NULL,
    "studyId" UUID NOT NULL,
    "revision" INTEGER NOT NULL,
    "status" "JobStatus" NOT NULL DEFAULT 'PENDING',
    "enqueuedAt" TIMESTAMP(3),
    "startedAt" TIMESTAMP(3),
    "finishedAt" TIMESTAMP(3),
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "errorCode" TEXT,
    "errorMessage" TEXT,
    "modelVersion" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "GradingJob_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "KneeResult" (
    "id" UUID NOT NULL,
    "gradingJobId" UUID NOT NULL,
    "instanceId" UUID NOT NULL,
    "laterality" "Laterality" NOT NULL,
    "klGrade" INTEGER NOT NULL,
    "probabilities" JSONB NOT NULL,
    "memberOutputs" JSONB,
    "region" JSONB,
    "modelVersion" TEXT NOT NULL,
    "timingsMs" JSONB NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "KneeResult_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Report" (
    "id" UUID NOT NULL,
    "studyId" UUID NOT NULL,
    "gradingJobId" UUID,
    "sopInstanceUid" TEXT NOT NULL,
    "seriesInstanceUid" TEXT NOT NULL,
    "sopClassUid" TEXT NOT NULL,
    "path" TEXT NOT NULL,
    "sha256" TEXT NOT NULL,
    "verified" BOOLEAN NOT NULL DEFAULT false,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Report_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Delivery" (
    "id" UUID NOT NULL,
    "reportId" UUID NOT NULL,
    "destinationAet" TEXT NOT NULL,
    "host" TEXT NOT NULL,
    "port" INTEGER NOT NULL,
    "status" "DeliveryStatus" NOT NULL DEFAULT 'PENDING',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "lastError" TEXT,
    "sentAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "Delivery_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "AuditEvent" (
    "id" BIGSERIAL NOT NULL,
    "at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "event" TEXT NOT NULL,
    "actor" TEXT NOT NULL,
    "studyInstanceUid" TEXT,
    "sopInstanceUid" TEXT,
    "details" JSONB,

    CONSTRAINT "AuditEvent_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "Study_studyInstanceUid_key" ON "Study"("studyInstanceUid");

-- CreateIndex
CREATE INDEX "Study_status_lastReceivedAt_idx" ON "Study"("status", "lastReceivedAt");

-- CreateIndex
CREATE UNIQUE INDEX "Series_seriesInstanceUid_key" ON "Series"("seriesInstanceUid");

-- CreateIndex
CREATE UNIQUE INDEX "Instance_sopInstanceUid_key" ON "Instance"("sopInstanceUid");

-- CreateIndex
CREATE INDEX "Instance_studyId_idx" ON "Instance"("studyId");

-- CreateIndex
CREATE UNIQUE INDEX "GradingJob_jobId_key" ON "GradingJob"("jobId");

-- CreateIndex
CREATE INDEX "GradingJob_enqueuedAt_idx" ON "GradingJob"("enqueuedAt");

-- CreateIndex
CREATE UNIQUE INDEX "GradingJob_studyId_revision_key" ON "GradingJob"("studyId", "revision");

-- CreateIndex
CREATE INDEX "KneeResult_gradingJobId_idx" ON "KneeResult"("gradingJobId");

-- CreateIndex
CREATE UNIQUE INDEX "Report_sopInstanceUid_key" ON "Report"("sopInstanceUid");

-- CreateIndex
CREATE INDEX "Delivery_status_idx" ON "Delivery"("status");

-- CreateIndex
CREATE INDEX "AuditEvent_event_at_idx" ON "AuditEvent"("event", "at");

-- CreateIndex
CREATE INDEX "AuditEvent_studyInstanceUid_idx" ON "AuditEvent"("studyInstanceUid");

-- AddForeignKey
ALTER TABLE "Series" ADD CONSTRAINT "Series_studyId_fkey" FOREIGN KEY ("studyId") REFERENCES "Study"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Instance" ADD CONSTRAINT "Instance_studyId_fkey" FOREIGN KEY ("studyId") REFERENCES "Study"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Instance" ADD CONSTRAINT "Instance_seriesId_fkey" FOREIGN KEY ("seriesId") REFERENCES "Series"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "GradingJob" ADD CONSTRAINT "GradingJob_studyId_fkey" FOREIGN KEY ("studyId") REFERENCES "Study"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "KneeResult" ADD CONSTRAINT "KneeResult_gradingJobId_fkey" FOREIGN KEY ("gradingJobId") REFERENCES "GradingJob"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "KneeResult" ADD CONSTRAINT "KneeResult_instanceId_fkey" FOREIGN KEY ("instanceId") REFERENCES "Instance"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Report" ADD CONSTRAINT "Report_studyId_fkey" FOREIGN KEY ("studyId") REFERENCES "Study"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Report" ADD CONSTRAINT "Report_gradingJobId_fkey" FOREIGN KEY ("gradingJobId") REFERENCES "GradingJob"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Delivery" ADD CONSTRAINT "Delivery_reportId_fkey" FOREIGN KEY ("reportId") REFERENCES "Report"("id") ON DELETE CASCADE ON UPDATE CASCADE;

