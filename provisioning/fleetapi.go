package provisioning

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// Fleet provisioning MQTT API topics (json format), exactly as AWS IoT.
const (
	topicCreateKeys = "$aws/certificates/create/json"
	topicCreateCSR  = "$aws/certificates/create-from-csr/json"
)

// topicRegister is the RegisterThing request topic for template.
func topicRegister(template string) string {
	return "$aws/provisioning-templates/" + template + "/provision/json"
}

// createResponse is the body of create*/accepted.
type createResponse struct {
	CertificateID             string `json:"certificateId"`
	CertificatePEM            string `json:"certificatePem"`
	PrivateKey                string `json:"privateKey,omitempty"` //nolint:gosec // the field name is AWS's
	CertificateOwnershipToken string `json:"certificateOwnershipToken"`
}

// registerResponse is the body of RegisterThing .../accepted.
type registerResponse struct {
	ThingName           string            `json:"thingName"`
	DeviceConfiguration map[string]string `json:"deviceConfiguration"`
}

// parseCreateResponse decodes and checks a create*/accepted payload. With
// wantKey the privateKey field is required (CreateKeysAndCertificate).
func parseCreateResponse(b []byte, wantKey bool) (*createResponse, *x509.Certificate, error) {
	var r createResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, nil, fmt.Errorf("decode create response: %w", err)
	}
	if r.CertificateOwnershipToken == "" || r.CertificatePEM == "" {
		return nil, nil, errors.New("decode create response: missing certificate or ownership token")
	}
	if wantKey && r.PrivateKey == "" {
		return nil, nil, errors.New("decode create response: missing private key")
	}
	blk, _ := pem.Decode([]byte(r.CertificatePEM))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, errors.New("decode create response: certificatePem is not a PEM certificate")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("decode create response: %w", err)
	}
	return &r, cert, nil
}

// parseRegisterResponse decodes a RegisterThing .../accepted payload.
func parseRegisterResponse(b []byte) (*registerResponse, error) {
	var r registerResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode register response: %w", err)
	}
	if !validThingName(r.ThingName) {
		return nil, fmt.Errorf("decode register response: invalid thing name %q", r.ThingName)
	}
	return &r, nil
}

// parseRejected decodes a .../rejected payload for op.
func parseRejected(op string, b []byte) *RejectedError {
	r := &RejectedError{Op: op}
	if err := json.Unmarshal(b, r); err != nil {
		r.StatusCode, r.ErrorCode, r.ErrorMessage = 0, "UndecodableRejection", "rejected with an undecodable payload"
	}
	r.Op = op
	return r
}

// validThingName applies AWS's rule: 1-128 of [a-zA-Z0-9:_-].
func validThingName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

type answer struct {
	accepted bool
	payload  []byte
}

// call performs one request/answer exchange: subscribe to /accepted and
// /rejected first, then publish, then wait up to timeout.
func call(ctx context.Context, conn Conn, op, topic string, payload []byte, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ch := make(chan answer, 2)
	deliver := func(accepted bool) func(string, []byte) {
		return func(_ string, p []byte) {
			select {
			case ch <- answer{accepted, append([]byte(nil), p...)}:
			default:
			}
		}
	}
	subs := []string{topic + "/accepted", topic + "/rejected"}
	var subscribed []string
	defer func() {
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer ucancel()
		for _, t := range subscribed {
			_ = conn.Unsubscribe(uctx, t) // best effort: the session ends soon anyway
		}
	}()
	for i, t := range subs {
		if err := conn.Subscribe(ctx, t, deliver(i == 0)); err != nil {
			return nil, stepErr(ctx, fmt.Errorf("subscribe %s: %w", t, err))
		}
		subscribed = append(subscribed, t)
	}
	if err := conn.Publish(ctx, topic, payload); err != nil {
		return nil, stepErr(ctx, fmt.Errorf("publish %s: %w", topic, err))
	}
	select {
	case a := <-ch:
		if !a.accepted {
			return nil, parseRejected(op, a.payload)
		}
		return a.payload, nil
	case <-ctx.Done():
		return nil, stepErr(ctx, fmt.Errorf("wait for %s answer: %w", op, ctx.Err()))
	}
}

// stepErr marks err as a step timeout when the step deadline (not the
// caller) ended it.
func stepErr(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}
