// Package notify tells end users that their data arrived (or why it did not). Handlers build a
// Notification and hand it to a Publisher: SNS on AWS, the local sink in the embedded default.
package notify

import (
	"context"
	"errors"
	"time"
)

// Notification is one message to an audience. Attributes become SNS message attributes, so
// subscribers filter with SNS filter policies (e.g. {"dataset": ["sales"]}).
type Notification struct {
	// ID is stable for one fact (e.g. derived from the input object), so a redelivered event
	// can be recognised downstream.
	ID         string            `json:"id"`
	Time       time.Time         `json:"time"`
	Dataset    string            `json:"dataset"`
	Subject    string            `json:"subject"`
	Message    string            `json:"message"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Publisher delivers notifications. An error means "not delivered, try again".
type Publisher interface {
	Publish(ctx context.Context, n Notification) error
}

// Validate reports what a publisher would refuse.
func (n Notification) Validate() error {
	var errs []error
	if n.Dataset == "" {
		errs = append(errs, errors.New("notification: dataset is required"))
	}
	if n.Subject == "" {
		errs = append(errs, errors.New("notification: subject is required"))
	}
	if len(n.Subject) > 100 {
		// SNS refuses longer subjects for email endpoints.
		errs = append(errs, errors.New("notification: subject longer than 100 characters"))
	}
	return errors.Join(errs...)
}
