-- A report's result also goes to the RIS: a FHIR R4 transaction or an HL7 v2 ORU^R01 per SR, each
-- a delivery of its own in the same outbox as the C-STORE to the PACS. One delivery per report and
-- channel.
CREATE TYPE "DeliveryChannel" AS ENUM ('DICOM', 'FHIR', 'HL7');

ALTER TABLE "Delivery" ADD COLUMN "channel" "DeliveryChannel" NOT NULL DEFAULT 'DICOM';

CREATE UNIQUE INDEX "Delivery_reportId_channel_key" ON "Delivery"("reportId", "channel");
