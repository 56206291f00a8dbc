package command

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Status is a command status, in the AWS IoT Commands vocabulary.
type Status string

// Statuses. Only IN_PROGRESS is not final.
const (
	StatusInProgress Status = "IN_PROGRESS"
	StatusSucceeded  Status = "SUCCEEDED"
	StatusFailed     Status = "FAILED"
	StatusRejected   Status = "REJECTED"
	StatusTimedOut   Status = "TIMED_OUT"
)

// Reason codes (Response.ReasonCode): snake_case, stable, documented in
// docs/commands.md.
const (
	ReasonOK                = "ok"
	ReasonInProgress        = "in_progress"
	ReasonArmed             = "armed"
	ReasonWaking            = "waking"
	ReasonMalformed         = "malformed_request"
	ReasonTooLarge          = "request_too_large"
	ReasonIDMismatch        = "id_mismatch"
	ReasonWrongDevice       = "wrong_device"
	ReasonUnknownCommand    = "unknown_command"
	ReasonBadParams         = "unexpected_params"
	ReasonBadSignature      = "invalid_signature"
	ReasonExpired           = "expired"
	ReasonFuture            = "issued_in_future"
	ReasonValidityTooLong   = "validity_too_long"
	ReasonClockUntrusted    = "clock_untrusted"
	ReasonInterlock         = "interlock_violated"
	ReasonInterlockStale    = "interlock_input_stale"
	ReasonInterlockMissing  = "interlock_input_missing"
	ReasonInterlockNotMet   = "interlock_not_met"
	ReasonConflict          = "conflict"
	ReasonQueueFull         = "queue_full"
	ReasonNoTransmitter     = "bus_unavailable"
	ReasonTransmitFailed    = "transmit_failed"
	ReasonNoConfirmation    = "no_confirmation"
	ReasonActuatorFault     = "actuator_fault"
	ReasonInterrupted       = "interrupted"
	ReasonShutdown          = "agent_shutdown"
	ReasonInternal          = "internal_error"
	ReasonLedgerUnavailable = "ledger_unavailable"
	ReasonLedgerFull        = "ledger_full"
	ReasonLedgerDamaged     = "ledger_damaged"
)

// Response is one status report for a command. Its JSON form (v1) is the
// project's response format:
//
//	{"id":"<id>","device":"<thing>","status":"SUCCEEDED","reason_code":"ok",
//	 "reason":"human text","ts":<unix ms>,"state":{"<signal>":<value>}}
type Response struct {
	ID         string             `json:"id"`
	Device     string             `json:"device"`
	Status     Status             `json:"status"`
	ReasonCode string             `json:"reason_code"`
	Reason     string             `json:"reason"`
	TS         int64              `json:"ts"`
	State      map[string]float64 `json:"state,omitempty"`
	// Topic is where the response is published: cmd/tcu/{thing}/response/{id}
	// or, for AWS IoT Commands, $aws/commands/things/{thing}/executions/{id}/response/json.
	Topic string `json:"topic"`
}

// Final reports whether r is a terminal status.
func (r Response) Final() bool { return r.Status != StatusInProgress }

// Time returns TS as a time.
func (r Response) Time() time.Time { return time.UnixMilli(r.TS) }

// Payload returns the MQTT payload to publish on r.Topic: the project format
// above, or the AWS IoT Commands UpdateCommandExecution body for $aws topics.
func (r Response) Payload() ([]byte, error) {
	if strings.HasPrefix(r.Topic, "$aws/") {
		return json.Marshal(r.aws())
	}
	w := r
	w.Topic = ""
	return json.Marshal(wireResponse(w))
}

// wireResponse drops Topic from the JSON form.
type wireResponse struct {
	ID         string             `json:"id"`
	Device     string             `json:"device"`
	Status     Status             `json:"status"`
	ReasonCode string             `json:"reason_code"`
	Reason     string             `json:"reason"`
	TS         int64              `json:"ts"`
	State      map[string]float64 `json:"state,omitempty"`
	Topic      string             `json:"-"`
}

type awsReason struct {
	ReasonCode        string `json:"reasonCode"`
	ReasonDescription string `json:"reasonDescription,omitempty"`
}

type awsValue struct {
	S string `json:"s"`
}

type awsResponse struct {
	Status       Status              `json:"status"`
	StatusReason *awsReason          `json:"statusReason,omitempty"`
	Result       map[string]awsValue `json:"result,omitempty"`
}

// aws converts r to the UpdateCommandExecution body: reasonCode upper-case
// ([A-Z0-9_-]{1,64}), reasonDescription ≤ 1024 chars without control
// characters, state values as strings.
func (r Response) aws() awsResponse {
	out := awsResponse{Status: r.Status}
	if r.ReasonCode != "" {
		code := strings.ToUpper(r.ReasonCode)
		if len(code) > 64 {
			code = code[:64]
		}
		desc := strings.Map(func(c rune) rune {
			if c < 0x20 || c == 0x7f {
				return ' '
			}
			return c
		}, r.Reason)
		if len(desc) > 1024 {
			desc = strings.ToValidUTF8(desc[:1024], "")
		}
		out.StatusReason = &awsReason{ReasonCode: code, ReasonDescription: desc}
	}
	if len(r.State) > 0 {
		out.Result = make(map[string]awsValue, len(r.State))
		for k, v := range r.State {
			out.Result[k] = awsValue{S: strconv.FormatFloat(v, 'g', -1, 64)}
		}
	}
	return out
}
