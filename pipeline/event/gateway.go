package event

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Protocols a gateway event names in detail.protocol (the values storage.CreateOptions uses).
const (
	ProtocolSFTP = "sftp"
	ProtocolFTP  = "ftp"
	ProtocolFTPS = "ftps"
)

// GatewayEvent is one of Ferry's own events: source "ferry.gateway", detail type
// "Transfer Completed", "Transfer Failed", "Login Failed" or "Client Banned".
type GatewayEvent = Event[GatewayDetail]

// GatewayDetail is the detail of Ferry's gateway events. JSON names are snake_case:
//
//	user            login name (for Login Failed: the name tried, possibly empty; for Client
//	                Banned: the name last tried, absent when the ban came from connections that
//	                never tried one)
//	protocol        "sftp", "ftp" or "ftps" (Client Banned: the protocol of the last offence)
//	session_id      id of the client connection/session, shared by its transfers; absent for
//	                Client Banned (a ban is about an address, not one connection)
//	client_address  client "ip:port" as the gateway saw it (Client Banned: the address banned,
//	                an IPv4 address or an IPv6 /64, without port)
//	bucket, key     the object written (raw key, as in S3); absent for Login Failed
//	bytes           bytes received from the client (for Transfer Failed: before it failed)
//	sha256          lower-case hex SHA-256 of the object's content; Transfer Completed only
//	transfer_id     id of the upload, as in the gateway's logs; absent for Login Failed
//	start_time      when the upload was opened (RFC 3339); absent for Login Failed
//	end_time        when it committed or failed (RFC 3339); absent for Login Failed
//	failure_reason  short reason; Transfer Failed, Login Failed and Client Banned only
//	banned_until    when the ban ends (RFC 3339); Client Banned only
//	score           the address's score that reached the threshold; Client Banned only
//	bans            the bans of this address remembered, this one included (a repeat
//	                offender's ban is longer); Client Banned only
//
// Transfer Completed is sent only after the upload committed (a clean close), never for a
// partial upload and never for a directory marker.
type GatewayDetail struct {
	User          string    `json:"user"`
	Protocol      string    `json:"protocol"`
	SessionID     string    `json:"session_id,omitempty"`
	ClientAddress string    `json:"client_address"`
	Bucket        string    `json:"bucket,omitempty"`
	Key           string    `json:"key,omitempty"`
	Bytes         int64     `json:"bytes"`
	SHA256        string    `json:"sha256,omitempty"`
	TransferID    string    `json:"transfer_id,omitempty"`
	StartTime     time.Time `json:"start_time,omitzero"`
	EndTime       time.Time `json:"end_time,omitzero"`
	FailureReason string    `json:"failure_reason,omitempty"`
	BannedUntil   time.Time `json:"banned_until,omitzero"`
	Score         int       `json:"score,omitempty"`
	Bans          int       `json:"bans,omitempty"`
}

// NewGatewayEvent builds a gateway event and validates it. account and region fill the
// envelope for the embedded bus; on AWS, EventBridge assigns id, account and region itself and
// only source, detail-type, detail, resources and time travel in the PutEvents entry.
//
// The event time is the transfer's end time (now for Login Failed and Client Banned). Transfer events list the
// bucket's ARN in resources, as S3's own events do, so one rule can match both.
func NewGatewayEvent(detailType string, d GatewayDetail, account, region string) (GatewayEvent, error) {
	at := d.EndTime
	if detailType == DetailTypeLoginFailed || detailType == DetailTypeClientBanned {
		at = time.Time{}
	}
	res := resources()
	if d.Bucket != "" {
		res = resources(BucketARN(d.Bucket))
	}
	e := GatewayEvent{
		Version: EnvelopeVersion, ID: NewID(), DetailType: detailType, Source: SourceGateway,
		Account: account, Time: eventTime(at), Region: region, Resources: res, Detail: d,
	}
	return e, ValidateGateway(e)
}

// DecodeGateway parses a gateway event, rejecting other sources and unknown detail types.
func DecodeGateway(data []byte) (GatewayEvent, error) {
	env, err := DecodeEnvelope(data)
	if err != nil {
		return GatewayEvent{}, err
	}
	if env.Source != SourceGateway {
		return GatewayEvent{}, fmt.Errorf("decode gateway event: source %q, want %q", env.Source, SourceGateway)
	}
	switch env.DetailType {
	case DetailTypeTransferCompleted, DetailTypeTransferFailed, DetailTypeLoginFailed, DetailTypeClientBanned:
	default:
		return GatewayEvent{}, fmt.Errorf("decode gateway event: unsupported detail-type %q", env.DetailType)
	}
	return As[GatewayDetail](env)
}

// ValidateGateway checks a gateway event against the contract above and returns every problem.
func ValidateGateway(e GatewayEvent) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	d := e.Detail
	if e.Source != SourceGateway {
		bad("source %q, want %q", e.Source, SourceGateway)
	}
	if d.Protocol == "" {
		bad("missing protocol")
	}
	if d.SessionID == "" && e.DetailType != DetailTypeClientBanned {
		bad("missing session_id")
	}
	if d.ClientAddress == "" {
		bad("missing client_address")
	}
	if d.Bytes < 0 {
		bad("negative bytes %d", d.Bytes)
	}
	transfer := func() {
		if d.User == "" {
			bad("missing user")
		}
		if d.Bucket == "" {
			bad("missing bucket")
		}
		if d.Key == "" {
			bad("missing key")
		}
		if d.TransferID == "" {
			bad("missing transfer_id")
		}
		if d.StartTime.IsZero() {
			bad("missing start_time")
		}
		if !d.BannedUntil.IsZero() || d.Score != 0 || d.Bans != 0 {
			bad("ban fields on a transfer")
		}
		if !d.EndTime.IsZero() && d.EndTime.Before(d.StartTime) {
			bad("end_time %s before start_time %s", d.EndTime.Format(time.RFC3339Nano), d.StartTime.Format(time.RFC3339Nano))
		}
	}
	switch e.DetailType {
	case DetailTypeTransferCompleted:
		transfer()
		if strings.HasSuffix(d.Key, "/") {
			bad("key %q is a directory marker: no Transfer Completed for those", d.Key)
		}
		if !isSHA256Hex(d.SHA256) {
			bad("sha256 %q is not 64 lower-case hex digits", d.SHA256)
		}
		if d.EndTime.IsZero() {
			bad("missing end_time")
		}
		if d.FailureReason != "" {
			bad("failure_reason on a completed transfer")
		}
	case DetailTypeTransferFailed:
		transfer()
		if d.FailureReason == "" {
			bad("missing failure_reason")
		}
		if d.SHA256 != "" {
			bad("sha256 on a failed transfer: a partial upload has no content hash")
		}
	case DetailTypeLoginFailed:
		if d.FailureReason == "" {
			bad("missing failure_reason")
		}
		if d.Bucket != "" || d.Key != "" || d.SHA256 != "" || d.TransferID != "" || d.Bytes != 0 {
			bad("transfer fields on a login failure")
		}
		if !d.BannedUntil.IsZero() || d.Score != 0 || d.Bans != 0 {
			bad("ban fields on a login failure")
		}
	case DetailTypeClientBanned:
		if d.FailureReason == "" {
			bad("missing failure_reason")
		}
		if d.BannedUntil.IsZero() {
			bad("missing banned_until")
		}
		if d.Score <= 0 || d.Bans <= 0 {
			bad("score %d and bans %d must be positive", d.Score, d.Bans)
		}
		if d.Bucket != "" || d.Key != "" || d.SHA256 != "" || d.TransferID != "" || d.Bytes != 0 || d.SessionID != "" {
			bad("transfer or session fields on a ban")
		}
	default:
		bad("detail-type %q is not a gateway event", e.DetailType)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid gateway event %q: %w", e.DetailType, err)
	}
	return nil
}

func isSHA256Hex(s string) bool {
	return len(s) == 64 && isHex(s) && strings.ToLower(s) == s
}
