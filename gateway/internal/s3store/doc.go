// Package s3store implements the storage contract over S3.
//
// Each user's view is a Home: a bucket and a key prefix. Every client path goes through
// vpath, so no operation reaches a key outside the home. Directories are key prefixes; an
// empty directory is a zero-byte "dir/" marker object. Nothing is cached: every call asks S3,
// so several gateway replicas over one bucket agree.
//
// # Modification times: one answer in every view
//
// A file's size and modification time must be the same whether a client stats it (SFTP
// stat/lstat/fstat, FTP MLST/MDTM/SIZE) or lists its directory (SFTP readdir, FTP LIST/MLSD):
// sync tools (rclone, WinSCP, lftp mirror) compare listings with local files and upload again
// whatever differs. A time can come with the upload (fsetstat before close, `put -p`), from a
// later setstat or MFMT, or from S3 alone (LastModified, for files no client dated).
//
// S3 cannot store such a time where a listing shows it: ListObjectsV2 gives key, size, ETag,
// LastModified and storage class, never metadata or tags, and LastModified is always the
// time of the write (CopyObject resets it to now). The choices were:
//
//   - Metadata or tags, read with a HEAD (and GetObjectTagging) per listed file: 5,000 extra
//     requests for a 5,000-file directory, far beyond twice a listing's time, and a HEAD per
//     file even in directories where nobody set a time, as nothing in a listing says which
//     files carry one.
//   - A per-directory index object read with one GET: cheap to read, but each setstat rewrites
//     the whole index (O(n²) bytes for a sync of n files), replicas setting times in the same
//     directory need conditional writes and retries, and deletions leave stale entries.
//   - A per-process cache: replicas would disagree. Not an option.
//   - Per-file attribute markers (chosen): each recorded time is a zero-byte object whose key
//     carries the data, in a hidden sub-prefix of the file's directory (format in
//     attrmarks.go). A directory's markers are read with ListObjectsV2 alone, in the same
//     order as its files, so a listing merges the two streams in one pass with bounded memory.
//
// Costs of the chosen design:
//
//   - Listing a directory where no file carries a time costs exactly what it did: its
//     listing shows no ".ferry-attrs/" prefix, so no marker is read. (Only when a listing's
//     whole first page sorts before ".ferry-attrs/" — over a thousand names starting with
//     characters like '-' or '#' — does one ListObjectsV2 probe settle it.)
//   - Listing a directory with markers costs one more ListObjectsV2 page per 1,000 markers,
//     read ahead concurrently with the directory's own pages.
//   - Stat of a file costs one ListObjectsV2 (the file's markers) besides its HEAD.
//   - Setting a time costs HEAD + ListObjectsV2 + PutObject (+ DeleteObject of the marker it
//     replaces); an upload that carries a time adds those after its commit; Remove and Rename
//     add a ListObjectsV2 (and move or delete the markers they find).
//   - Markers are objects: S3 tools see them (as directory markers, which the pipeline and most
//     tools ignore), they fire S3 events (ignored the same way), and a directory rename counts
//     them against MaxRenameKeys. Their names are reserved: no client path may contain a
//     ".ferry-attrs" component.
//
// A marker names the object version it was set on (ETag and LastModified to the second), so
// any later write of the object — by Ferry without a time, or by any S3 client — ends it
// without anyone deleting it: both views then show the new LastModified. A listing's
// LastModified is truncated to the second, as a HEAD's is, so both views agree for untouched
// files too. Replicas agree because markers are the only record and every view reads them
// from S3; of several markers for one version, the latest written wins on every replica.
package s3store
