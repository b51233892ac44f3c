// Package fakeaws serves the wire protocols of the AWS calls the pipeline makes — SNS Publish
// (query protocol) and EventBridge PutEvents (JSON 1.1) — on 127.0.0.1, decoding each request as
// AWS would and recording it, so tests and the Lambda runtime emulator can check what a real
// binary sent.
package fakeaws

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// SNSMessage is one decoded Publish call.
type SNSMessage struct {
	TopicArn         string
	Subject          string
	Message          string
	MessageStructure string
	// Protocols are the per-protocol messages of a MessageStructure "json" publish, checked as
	// SNS checks them: a JSON object whose values are strings, with a "default" key.
	Protocols              map[string]string
	MessageGroupID         string
	MessageDeduplicationID string
	Attributes             map[string]string // name -> value ("String" data type checked)
}

// PutEventsEntry is one decoded PutEvents entry.
type PutEventsEntry struct {
	Source       string
	DetailType   string
	Detail       string
	Resources    []string
	EventBusName string
	Time         json.RawMessage `json:",omitempty"`
}

// Server answers SNS and EventBridge calls; which one is told by the request's protocol.
type Server struct {
	URL string

	t  testing.TB
	mu sync.Mutex
	sn []SNSMessage
	ev []PutEventsEntry
	// FailSNS makes the next n Publish calls fail with a 500 (for retry tests).
	failSNS int
	refuse  func(PutEventsEntry) string
	// failEvents makes the next PutEvents calls fail whole, with failEventsCode.
	failEvents     int
	failEventsCode string
	calls          map[string]int // requests received, by action (Publish, PutEvents)
}

// FailEvents makes the next n PutEvents calls fail whole, as EventBridge does when it is
// throttling ("ThrottlingException", 400) or failing ("InternalException", 500). The SDK
// retries both.
func (s *Server) FailEvents(n int, code string) {
	s.mu.Lock()
	s.failEvents, s.failEventsCode = n, code
	s.mu.Unlock()
}

// Calls returns how many requests of action ("Publish", "PutEvents") arrived, failed or not.
func (s *Server) Calls(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[action]
}

// RefuseEvents makes PutEvents fail the entries for which refuse returns an error code (the
// call succeeds with FailedEntryCount, as EventBridge answers a partial failure).
func (s *Server) RefuseEvents(refuse func(PutEventsEntry) string) {
	s.mu.Lock()
	s.refuse = refuse
	s.mu.Unlock()
}

// Start runs a server until t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, calls: map[string]int{}}
	hs := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(hs.Close)
	s.URL = hs.URL
	return s
}

// FailSNS makes the next n Publish calls fail with an internal error.
func (s *Server) FailSNS(n int) {
	s.mu.Lock()
	s.failSNS = n
	s.mu.Unlock()
}

// SNS returns the Publish calls received so far.
func (s *Server) SNS() []SNSMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SNSMessage(nil), s.sn...)
}

// Events returns the PutEvents entries accepted so far.
func (s *Server) Events() []PutEventsEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]PutEventsEntry(nil), s.ev...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=") {
		s.t.Errorf("fakeaws: unsigned request %s %s", r.Method, r.URL)
	}
	switch {
	case r.Header.Get("X-Amz-Target") == "AWSEvents.PutEvents":
		s.mu.Lock()
		s.calls["PutEvents"]++
		fail := s.failEvents > 0
		if fail {
			s.failEvents--
		}
		code := s.failEventsCode
		s.mu.Unlock()
		if fail {
			status := http.StatusInternalServerError
			if code == "ThrottlingException" {
				status = http.StatusBadRequest
			}
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.Header().Set("X-Amzn-ErrorType", code)
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"__type":%q,"message":"injected failure"}`, code)
			return
		}
		s.putEvents(w, r, body)
	case strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded"):
		s.mu.Lock()
		s.calls["Publish"]++
		s.mu.Unlock()
		s.publish(w, body)
	default:
		s.t.Errorf("fakeaws: unknown request %s %s %q", r.Method, r.Header.Get("Content-Type"), r.Header.Get("X-Amz-Target"))
		http.Error(w, "unknown request", http.StatusBadRequest)
	}
}

// publish decodes SNS's query protocol: Action=Publish&Version=2010-03-31&TopicArn=...&
// MessageAttributes.entry.N.Name=...&MessageAttributes.entry.N.Value.DataType=String&
// MessageAttributes.entry.N.Value.StringValue=...
func (s *Server) publish(w http.ResponseWriter, body []byte) {
	form, err := url.ParseQuery(string(body))
	if err != nil || form.Get("Action") != "Publish" || form.Get("Version") != "2010-03-31" {
		s.t.Errorf("fakeaws: bad SNS request %q: %v", body, err)
		queryError(w, http.StatusBadRequest, "InvalidParameter", "bad request")
		return
	}
	m := SNSMessage{
		TopicArn: form.Get("TopicArn"), Subject: form.Get("Subject"), Message: form.Get("Message"),
		MessageGroupID: form.Get("MessageGroupId"), MessageDeduplicationID: form.Get("MessageDeduplicationId"),
		Attributes: map[string]string{},
	}
	for i := 1; ; i++ {
		p := "MessageAttributes.entry." + strconv.Itoa(i) + "."
		name := form.Get(p + "Name")
		if name == "" {
			break
		}
		if dt := form.Get(p + "Value.DataType"); dt != "String" {
			s.t.Errorf("fakeaws: attribute %s has data type %q", name, dt)
		}
		m.Attributes[name] = form.Get(p + "Value.StringValue")
	}
	if m.TopicArn == "" || m.Message == "" {
		queryError(w, http.StatusBadRequest, "InvalidParameter", "TopicArn and Message are required")
		return
	}
	m.MessageStructure = form.Get("MessageStructure")
	switch m.MessageStructure {
	case "":
	case "json":
		protos, err := checkStructured(m.Message)
		if err != nil {
			queryError(w, http.StatusBadRequest, "InvalidParameter", "Invalid parameter: Message Structure - "+err.Error())
			return
		}
		m.Protocols = protos
	default:
		queryError(w, http.StatusBadRequest, "InvalidParameter", "Invalid parameter: MessageStructure: must be json")
		return
	}
	if size := wireSize(m); size > maxMessageBytes {
		queryError(w, http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("Invalid parameter: Message too long: %d bytes", size))
		return
	}
	if err := checkSubject(m.Subject); err != nil {
		queryError(w, http.StatusBadRequest, "InvalidParameter", "Invalid parameter: Subject: "+err.Error())
		return
	}
	s.mu.Lock()
	fail := s.failSNS > 0
	if fail {
		s.failSNS--
	} else {
		s.sn = append(s.sn, m)
	}
	n := len(s.sn)
	s.mu.Unlock()
	if fail {
		queryError(w, http.StatusInternalServerError, "InternalError", "injected failure")
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>msg-%d</MessageId></PublishResult><ResponseMetadata><RequestId>req-%d</RequestId></ResponseMetadata></PublishResponse>`, n, n)
}

func queryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>err</RequestId></ErrorResponse>`, code, msg)
}

func (s *Server) putEvents(w http.ResponseWriter, r *http.Request, body []byte) {
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		s.t.Errorf("fakeaws: PutEvents content type %q", ct)
	}
	var in struct{ Entries []PutEventsEntry }
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || len(in.Entries) == 0 || len(in.Entries) > 10 {
		s.t.Errorf("fakeaws: bad PutEvents body %s: %v", body, err)
		w.Header().Set("X-Amzn-ErrorType", "ValidationException")
		http.Error(w, `{"message":"bad request"}`, http.StatusBadRequest)
		return
	}
	type result struct {
		EventId      string `json:",omitempty"`
		ErrorCode    string `json:",omitempty"`
		ErrorMessage string `json:",omitempty"`
	}
	out := struct {
		FailedEntryCount int
		Entries          []result
	}{}
	s.mu.Lock()
	for _, e := range in.Entries {
		if e.Source == "" || e.DetailType == "" || !json.Valid([]byte(e.Detail)) {
			s.t.Errorf("fakeaws: incomplete PutEvents entry %+v", e)
		}
		code := ""
		if strings.HasPrefix(e.Source, "aws.") {
			code = "NotAuthorizedForSourceException" // EventBridge keeps aws.* sources to AWS
		} else if s.refuse != nil {
			code = s.refuse(e)
		}
		if code != "" {
			out.FailedEntryCount++
			out.Entries = append(out.Entries, result{ErrorCode: code, ErrorMessage: "refused: " + e.Source})
			continue
		}
		s.ev = append(s.ev, e)
		out.Entries = append(out.Entries, result{EventId: fmt.Sprintf("ev-%d", len(s.ev))})
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(out)
}

// checkSubject applies SNS's rule for Publish's Subject: printable ASCII starting with a letter,
// digit or punctuation, no line breaks or control characters, fewer than 100 characters.
func checkSubject(s string) error {
	if s == "" {
		return nil // optional
	}
	if len(s) >= 100 {
		return fmt.Errorf("%d characters, must be less than 100", len(s))
	}
	if s[0] == ' ' {
		return fmt.Errorf("must begin with a letter, number or punctuation mark")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return fmt.Errorf("byte %#x at %d: must be ASCII text without control characters", s[i], i)
		}
	}
	return nil
}

// maxMessageBytes is SNS's default publish limit, message and attributes together.
const maxMessageBytes = 256 << 10

func wireSize(m SNSMessage) int {
	n := len(m.Message)
	for k, v := range m.Attributes {
		n += len(k) + len("String") + len(v)
	}
	return n
}

// checkStructured applies SNS's rules for a MessageStructure "json" message: a syntactically
// valid JSON object with a top-level "default" key whose value is a string; every other value is
// the message of the protocol its key names, so it must be a string too.
func checkStructured(msg string) (map[string]string, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(msg), &raw); err != nil || raw == nil {
		return nil, fmt.Errorf("JSON message body failed to parse")
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fmt.Errorf("JSON message body: the value of %q is not a string", k)
		}
		out[k] = s
	}
	if _, ok := out["default"]; !ok {
		return nil, fmt.Errorf("No default entry in JSON message body")
	}
	return out, nil
}
