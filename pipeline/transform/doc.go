// Package transform holds the pipeline's built-in file transforms: pure streaming
// io.Reader-to-io.Reader steps with no AWS imports, chained by a route.
//
// # Model
//
// A [Transform] receives one [File] (a name and a Body read once) and emits zero or more Files
// through a callback, synchronously. 1->1 transforms emit once with a Body that converts while
// it is read, so a [Chain] of steps streams end to end in constant memory without goroutines:
// the sink reading the last Body pulls bytes through every step. unzip emits once per entry.
//
// Errors: a [*Rejection] (match with errors.As) means the input is bad and belongs in
// quarantine; it names the line when the format has lines. Anything else is transient or
// internal and worth a retry. Validating transforms (validate-csv, verify-checksum, csv-to-jsonl)
// may only find a problem late, so the error comes from the output Body's Read (and again from
// Apply and Chain): a sink must not commit an output whose Read failed.
//
// Record counts: put a [Counter] in the context with [WithCounter] and read [Records] after the
// chain; csv-to-jsonl adds one per JSON line written.
//
// # Built-ins (Default)
//
//	copy             unchanged
//	gunzip           gzip -> bytes; "x.csv.gz" -> "x.csv"; gzip bombs rejected: options
//	                 max_bytes (output, default 8GiB), max_ratio (default 500)
//	unzip            one output per entry (spooled to a bounded temp file; zip bombs and
//	                 path-traversal names rejected); options max_bytes, max_entries,
//	                 max_entry_bytes, max_total_bytes, max_ratio, temp_dir
//	charset          single-byte text -> UTF-8; option from: a code page by name (windows-1252, the default; latin1, iso-8859-15, ibm437, koi8-r, cp850…)
//	newlines         CRLF -> LF
//	csv-to-jsonl     header row -> keys, one JSON object (string values) per line; "x.csv" ->
//	                 "x.jsonl"; options delimiter, quote ("" for none), header (true | [names]),
//	                 max_line_bytes (one record, default 16MiB), max_columns (default 10000)
//	validate-csv     passes bytes through; options required_columns, columns, header, delimiter,
//	                 quote, max_line_bytes, max_columns
//	verify-checksum  passes bytes through, compares the digest at EOF; options algorithm
//	                 (sha256 | md5), expected (hex) — else the caller's [WithChecksum] value,
//	                 typically from a sidecar read with [ParseSidecar]; [SidecarAlgorithm] says
//	                 which sidecar a step needs (the transform handler fetches "<key>.<alg>")
//
// # Limits
//
// Every transform that holds or multiplies data is bounded by options with safe defaults
// (sizes as "16MiB" or bytes), enforced while streaming; going past one is a Rejection whose
// reason names the option, so the rejection notice tells the admin what to raise. Memory is then
// bounded by the options, never by the input: at most a record (held twice by validate-csv), a
// part of output, and decompression windows.
//
// # Adding a transform
//
// Write one type implementing Transform and a [Factory] that reads its options through
// [Options] (String, Int, Size, Bool, Strings; any option the factory does not read is reported as
// unknown), then add one line to the map in [Default] (or call [Registry.Register] on your own
// registry). For a 1->1 transform, wrap in.Body in a reader that converts as it is read and
// return emitOne(ctx, name, reader, emit); return Rejections for bad input. Add a golden case
// (input + expected output) under testdata/ and a row in golden_test.go.
package transform
