// Package fleetprov is tcu-devcloud's stand-in for the AWS IoT fleet
// provisioning MQTT API (CreateCertificateFromCsr, CreateKeysAndCertificate,
// RegisterThing on the exact $aws/... topics and JSON payloads) and for an
// EST (RFC 7030) server. It issues certificates from the devcloud's test CA.
//
// It talks to the broker only through the Broker and Registry interfaces
// declared here; cmd/tcu-devcloud/devcloud adapts its MQTT broker to them.
// Fault knobs (Faults, SetESTPending) let tests reject, delay or drop the
// flow at a chosen step.
package fleetprov

import (
	"crypto"
	"crypto/x509"
	"log/slog"
	"time"
)

// Broker is the slice of the devcloud MQTT broker that fleetprov uses.
type Broker interface {
	// Handle registers fn for messages published by clients on topics
	// matching filter (MQTT wildcards). clientID is the publisher's client
	// ID. fn must not block for long.
	Handle(filter string, fn func(clientID, topic string, payload []byte))
	// Publish delivers payload on topic to its subscribers (QoS 1).
	Publish(topic string, payload []byte) error
}

// Disconnecter is optionally implemented by a Broker; when it is, the
// DropAt fault closes the requesting client's connection instead of only
// withholding the answer.
type Disconnecter interface {
	Disconnect(clientID string) error
}

// ClientPublisher is optionally implemented by a Broker. AWS IoT answers
// provisioning requests only on the connection that sent them; when the
// broker can do the same, fleetprov uses PublishTo, so two devices
// provisioning at once never see each other's certificates. Without it,
// answers go to every subscriber of the response topic.
type ClientPublisher interface {
	PublishTo(clientID, topic string, payload []byte) error
}

// Registry records which certificate belongs to which thing. The broker
// uses it to grant a certificate its thing's topics once RegisterThing
// succeeds; until then the certificate is PENDING_ACTIVATION and the
// broker must refuse it (it is unknown to the Registry).
type Registry interface {
	ActivateThing(certDER []byte, thing string)
}

// Deactivator is optionally implemented by a Registry: the certificate
// event rule (old certificate replaced by a renewal) calls it so the
// broker refuses the old certificate from then on.
type Deactivator interface {
	DeactivateCertificate(certDER []byte)
}

// Certificate states, as AWS IoT names them.
const (
	StatusPending  = "PENDING_ACTIVATION"
	StatusActive   = "ACTIVE"
	StatusInactive = "INACTIVE"
)

// Certificate is a certificate the Server issued, as its registry sees it.
type Certificate struct {
	ID     string
	Status string
	Thing  string
}

// Template is a provisioning template as the devcloud understands it.
type Template struct {
	// ThingNamePrefix is prepended to the value of ThingNameParam.
	ThingNamePrefix string
	// ThingNameParam names the parameter whose value becomes the thing
	// name (e.g. "SerialNumber"). Required.
	ThingNameParam string
	// Required lists parameters RegisterThing must carry (besides
	// ThingNameParam); a missing one is rejected with 400 InvalidParameters.
	Required []string
	// DeviceConfiguration is returned verbatim in RegisterThing's answer.
	DeviceConfiguration map[string]string
}

// Rejection is the body of a .../rejected answer.
type Rejection struct {
	StatusCode   int    `json:"statusCode"`
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
}

// Step names used by Faults.
const (
	StepCreate   = "create"   // CreateCertificateFromCsr and CreateKeysAndCertificate
	StepRegister = "register" // RegisterThing
)

// Faults are the knobs tests and the devcloud console turn. The zero value
// is a well-behaved server.
type Faults struct {
	// RejectCreate, when non-nil, answers every create call with it.
	RejectCreate *Rejection
	// RejectRegister, when non-nil, answers every RegisterThing with it.
	RejectRegister *Rejection
	// Delay holds every answer back this long.
	Delay time.Duration
	// DropAt is a step name (StepCreate, StepRegister) at which the server
	// does not answer and, if the broker is a Disconnecter, drops the
	// client. DropCount bounds how many requests are dropped (0 = all).
	DropAt    string
	DropCount int
	// LoseAnswerAt is a step name at which the server carries the
	// request out (mints, or registers and activates) but never answers
	// and, if the broker is a Disconnecter, drops the client: what a
	// device sees when it crashes or loses its session in that window.
	// LoseCount bounds how often (0 = always).
	LoseAnswerAt string
	LoseCount    int
}

// Options configure a Server.
type Options struct {
	Broker   Broker   // required
	Registry Registry // optional
	// CACert and CAKey are the test CA that signs issued certificates.
	CACert *x509.Certificate
	CAKey  crypto.Signer
	// Templates by name; RegisterThing for an unknown name is rejected.
	Templates map[string]Template
	Logger    *slog.Logger
	// Validity of issued certificates; 0 means "until 2049-12-31T23:59:59Z"
	// like AWS IoT's own certificates.
	Validity time.Duration
	// TokenLifetime of ownership tokens; 0 means one hour, as on AWS.
	TokenLifetime time.Duration
	// ESTUsers are HTTP basic credentials the EST endpoint accepts besides
	// a TLS client certificate signed by CACert.
	ESTUsers map[string]string
	// ESTClientCAs verify TLS client certificates presented to
	// /simpleenroll (e.g. the claim CA); nil means CACert only.
	// /simplereenroll always requires a certificate issued by CACert.
	ESTClientCAs *x509.CertPool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}
