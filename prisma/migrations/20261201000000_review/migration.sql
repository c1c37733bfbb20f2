-- CreateEnum
CREATE TYPE "UserRole" AS ENUM ('RADIOLOGIST', 'VIEWER', 'ADMIN');

-- AlterTable
ALTER TABLE "Study" ADD COLUMN     "patientId" TEXT,
ADD COLUMN     "patientName" TEXT,
ADD COLUMN     "studyDate" TEXT;

-- AlterTable
ALTER TABLE "AuditEvent" ADD COLUMN     "address" TEXT;

-- CreateTable
CREATE TABLE "User" (
    "id" UUID NOT NULL,
    "username" TEXT NOT NULL,
    "displayName" TEXT NOT NULL,
    "organisation" TEXT NOT NULL,
    "role" "UserRole" NOT NULL,
    "passwordHash" TEXT NOT NULL,
    "disabled" BOOLEAN NOT NULL DEFAULT false,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "User_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Session" (
    "id" UUID NOT NULL,
    "tokenHash" TEXT NOT NULL,
    "userId" UUID NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expiresAt" TIMESTAMP(3) NOT NULL,
    "address" TEXT,

    CONSTRAINT "Session_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Review" (
    "id" UUID NOT NULL,
    "studyId" UUID NOT NULL,
    "gradingJobId" UUID NOT NULL,
    "userId" UUID NOT NULL,
    "sequence" INTEGER NOT NULL,
    "predecessorSopInstanceUid" TEXT NOT NULL,
    "sopInstanceUid" TEXT NOT NULL,
    "findings" TEXT NOT NULL,
    "impression" TEXT NOT NULL,
    "signedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Review_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ReviewKnee" (
    "id" UUID NOT NULL,
    "reviewId" UUID NOT NULL,
    "kneeResultId" UUID NOT NULL,
    "aiGrade" INTEGER NOT NULL,
    "radiologistGrade" INTEGER,
    "notGradableReason" TEXT,

    CONSTRAINT "ReviewKnee_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "User_username_key" ON "User"("username");

-- CreateIndex
CREATE UNIQUE INDEX "Session_tokenHash_key" ON "Session"("tokenHash");

-- CreateIndex
CREATE INDEX "Session_expiresAt_idx" ON "Session"("expiresAt");

-- CreateIndex
CREATE UNIQUE INDEX "Review_sopInstanceUid_key" ON "Review"("sopInstanceUid");

-- CreateIndex
CREATE INDEX "Review_signedAt_idx" ON "Review"("signedAt");

-- CreateIndex
CREATE UNIQUE INDEX "Review_gradingJobId_sequence_key" ON "Review"("gradingJobId", "sequence");

-- CreateIndex
CREATE UNIQUE INDEX "Review_gradingJobId_predecessorSopInstanceUid_key" ON "Review"("gradingJobId", "predecessorSopInstanceUid");

-- CreateIndex
CREATE UNIQUE INDEX "ReviewKnee_reviewId_kneeResultId_key" ON "ReviewKnee"("reviewId", "kneeResultId");

-- AddForeignKey
ALTER TABLE "Session" ADD CONSTRAINT "Session_userId_fkey" FOREIGN KEY ("userId") REFERENCES "User"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Review" ADD CONSTRAINT "Review_studyId_fkey" FOREIGN KEY ("studyId") REFERENCES "Study"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Review" ADD CONSTRAINT "Review_gradingJobId_fkey" FOREIGN KEY ("gradingJobId") REFERENCES "GradingJob"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Review" ADD CONSTRAINT "Review_userId_fkey" FOREIGN KEY ("userId") REFERENCES "User"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ReviewKnee" ADD CONSTRAINT "ReviewKnee_reviewId_fkey" FOREIGN KEY ("reviewId") REFERENCES "Review"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ReviewKnee" ADD CONSTRAINT "ReviewKnee_kneeResultId_fkey" FOREIGN KEY ("kneeResultId") REFERENCES "KneeResult"("id") ON DELETE CASCADE ON UPDATE CASCADE;

