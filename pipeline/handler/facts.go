package handler

import (
	"errors"
	"time"
)

// busyWait bounds how long a handler waits for a concurrent delivery of the same fact.
const busyWait = 10 * time.Second

// ErrBusy is returned by handlers when another delivery holds a fresh claim: a retry later
// finds the fact done.
var ErrBusy = errors.New("handler: another delivery is handling this event")

// Names of the ledger's facts about one file version (id: tracking.FileID of it), for readers
// such as `ferry trace`.
func ObjectFact(id string) string { return "object/" + id }           // transform: its FileDetail, or {"batch": …}
func NoticeFact(id string) string { return "notify/" + safeName(id) } // notify: a SentRecord

// BatchMember is what the ledger keeps for a file processed in its batch (ObjectFact of the
// file): the marker's key and file id, whose own fact holds the batch's FileDetail.
type BatchMember struct {
	Batch   string `json:"batch"`
	BatchID string `json:"batch_id,omitempty"`
}
