package handler

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awseventbridge "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/ferrygw/ferry/pipeline/event"
	"github.com/ferrygw/ferry/pipeline/putevents"
)

// EventBridgeEmitter publishes pipeline events with a synchronous PutEvents call, so the
// handler knows the event is on the bus before it marks the fact done (the batching
// putevents.Publisher is fire-and-forget, right for the gateway, wrong here).
type EventBridgeEmitter struct {
	API     putevents.API
	BusName string // "" = default
}

// Put sends events (at most 10) and fails unless every entry was accepted.
func (e EventBridgeEmitter) Put(ctx context.Context, events ...event.Envelope) error {
	if len(events) > putevents.MaxBatchEntries {
		return fmt.Errorf("put events: %d entries, at most %d", len(events), putevents.MaxBatchEntries)
	}
	bus := e.BusName
	if bus == "" {
		bus = "default"
	}
	in := &awseventbridge.PutEventsInput{}
	for _, ev := range events {
		in.Entries = append(in.Entries, ebtypes.PutEventsRequestEntry{
			Source: aws.String(ev.Source), DetailType: aws.String(ev.DetailType),
			Detail: aws.String(string(bytes.TrimSpace(ev.Detail))), Resources: ev.Resources,
			Time: aws.Time(ev.Time), EventBusName: aws.String(bus),
		})
	}
	out, err := e.API.PutEvents(ctx, in)
	if err != nil {
		return fmt.Errorf("put events: %w", err)
	}
	if out.FailedEntryCount > 0 {
		var codes []string
		for _, r := range out.Entries {
			if r.ErrorCode != nil {
				codes = append(codes, aws.ToString(r.ErrorCode)+": "+aws.ToString(r.ErrorMessage))
			}
		}
		return fmt.Errorf("put events: %d failed: %s", out.FailedEntryCount, strings.Join(codes, "; "))
	}
	return nil
}
