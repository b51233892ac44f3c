// Package handler is the pipeline's work, the same code in both homes: as the Lambda functions
// on AWS (pipeline/cmd) and as targets of the embedded default's bus.
//
//   - Transform takes an S3 "Object Created" event, picks the file's route, runs the route's
//     transform chain into the output objects (or copies a rejected file to quarantine) and
//     emits "File Processed" or "File Rejected".
//   - Notify takes those events and sends each end user one notice through SNS (or the local
//     sink), in the dataset's language and templates.
//
// Both are idempotent through the Ledger, records in the bucket itself: a redelivered event
// finds its claim or its result and does nothing twice, a claim left by a crashed attempt goes
// stale and is taken over, and the same content uploaded twice is processed once. They also
// write the status records that `ferry status` and `ferry trace` read (package tracking).
package handler
