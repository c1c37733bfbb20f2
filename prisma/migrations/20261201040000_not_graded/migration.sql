-- Knees found but not graded (a knee arthroplasty): reported, never given a KL grade.
ALTER TABLE "InstanceGrading" ADD COLUMN "notGraded" JSONB NOT NULL DEFAULT '[]';
