package fleetprov

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
)

// createAccepted is the body of create*/accepted (privateKey only for
// CreateKeysAndCertificate).
type createAccepted struct {
	CertificateID             string `json:"certificateId"`
	CertificatePEM            string `json:"certificatePem"`
	PrivateKey                string `json:"privateKey,omitempty"`
	CertificateOwnershipToken string `json:"certificateOwnershipToken"`
}

type csrRequest struct {
	CertificateSigningRequest string `json:"certificateSigningRequest"`
}

type registerRequest struct {
	CertificateOwnershipToken string            `json:"certificateOwnershipToken"`
	Parameters                map[string]string `json:"parameters"`
}

type registerAccepted struct {
	DeviceConfiguration map[string]string `json:"deviceConfiguration"`
	ThingName           string            `json:"thingName"`
}

var errBadFormat = Rejection{StatusCode: 400, ErrorCode: "InvalidPayload", ErrorMessage: "Only the json payload format is supported."}

func (s *Server) handleCreateKeys(clientID, topic string, _ []byte) {
	if format(topic) != "json" {
		s.reject(clientID, topic, errBadFormat)
		return
	}
	if s.preflight(StepCreate, clientID, topic, func(f Faults) *Rejection { return f.RejectCreate }) {
		return
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		s.reject(clientID, topic, Rejection{StatusCode: 500, ErrorCode: "InternalFailure", ErrorMessage: "Key generation failed."})
		return
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		s.reject(clientID, topic, Rejection{StatusCode: 500, ErrorCode: "InternalFailure", ErrorMessage: "Key encoding failed."})
		return
	}
	acc, ok := s.mint(clientID, topic, key.Public(), pkix.Name{CommonName: "tcu-devcloud-generated"})
	if !ok {
		return
	}
	acc.PrivateKey = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if !s.loseAnswer(StepCreate, clientID) {
		s.reply(clientID, topic, "/accepted", acc)
	}
}

func (s *Server) handleCreateCSR(clientID, topic string, payload []byte) {
	if format(topic) != "json" {
		s.reject(clientID, topic, errBadFormat)
		return
	}
	if s.preflight(StepCreate, clientID, topic, func(f Faults) *Rejection { return f.RejectCreate }) {
		return
	}
	var req csrRequest
	if err := json.Unmarshal(payload, &req); err != nil || req.CertificateSigningRequest == "" {
		s.reject(clientID, topic, Rejection{StatusCode: 400, ErrorCode: "InvalidPayload", ErrorMessage: "Missing certificateSigningRequest."})
		return
	}
	csr, err := parseCSRPEM(req.CertificateSigningRequest)
	if err != nil {
		s.reject(clientID, topic, Rejection{StatusCode: 400, ErrorCode: "InvalidPayload", ErrorMessage: "CSR is malformed"})
		return
	}
	// Only the common name is taken from the CSR: a requested OU or other
	// attribute must not give a PENDING certificate any standing.
	acc, ok := s.mint(clientID, topic, csr.PublicKey, pkix.Name{CommonName: csr.Subject.CommonName})
	if ok && !s.loseAnswer(StepCreate, clientID) {
		s.reply(clientID, topic, "/accepted", acc)
	}
}

// preflight applies drop and reject faults; true means "handled".
func (s *Server) preflight(step, clientID, topic string, pick func(Faults) *Rejection) bool {
	if s.intercept(step, clientID) {
		return true
	}
	s.mu.Lock()
	r := pick(s.faults)
	s.mu.Unlock()
	if r != nil {
		s.reject(clientID, topic, *r)
		return true
	}
	return false
}

// mint issues a certificate for pub and records its ownership token.
func (s *Server) mint(clientID, topic string, pub crypto.PublicKey, subject pkix.Name) (createAccepted, bool) {
	der, err := s.issue(pub, subject)
	if err != nil {
		s.log.Error("issue certificate", "err", err)
		s.reject(clientID, topic, Rejection{StatusCode: 500, ErrorCode: "InternalFailure", ErrorMessage: "Certificate issuance failed."})
		return createAccepted{}, false
	}
	sum := sha256.Sum256(der)
	id := hex.EncodeToString(sum[:])
	tok := newToken()
	s.mu.Lock()
	s.tokens[tok] = pending{certID: id, certDER: der, expires: s.opts.Now().Add(s.opts.TokenLifetime)}
	s.certs[id] = &cert{der: der, status: StatusPending}
	s.mu.Unlock()
	s.log.Info("certificate created", "certificate_id", id[:12])
	return createAccepted{
		CertificateID:             id,
		CertificatePEM:            string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		CertificateOwnershipToken: tok,
	}, true
}

// issue signs a client certificate for pub with the test CA.
func (s *Server) issue(pub crypto.PublicKey, subject pkix.Name) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	now := s.opts.Now()
	notAfter := awsExpiry
	if s.opts.Validity > 0 {
		notAfter = now.Add(s.opts.Validity)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-5 * 60e9),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.opts.CACert, pub, s.opts.CAKey)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	s.mu.Lock()
	s.issued++
	s.mu.Unlock()
	return der, nil
}

func parseCSRPEM(s string) (*x509.CertificateRequest, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("no CERTIFICATE REQUEST block")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr signature: %w", err)
	}
	return csr, nil
}

// templateName extracts <name> from $aws/provisioning-templates/<name>/provision/<fmt>.
func templateName(topic string) string {
	parts := strings.Split(topic, "/")
	if len(parts) != 5 {
		return ""
	}
	return parts[2]
}

func (s *Server) handleRegister(clientID, topic string, payload []byte) {
	if format(topic) != "json" {
		s.reject(clientID, topic, errBadFormat)
		return
	}
	if s.preflight(StepRegister, clientID, topic, func(f Faults) *Rejection { return f.RejectRegister }) {
		return
	}
	var req registerRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		s.reject(clientID, topic, Rejection{StatusCode: 400, ErrorCode: "InvalidPayload", ErrorMessage: "Payload is not valid JSON."})
		return
	}
	tmpl, ok := s.opts.Templates[templateName(topic)]
	if !ok {
		s.reject(clientID, topic, Rejection{StatusCode: 404, ErrorCode: "ResourceNotFound", ErrorMessage: "The provisioning template does not exist."})
		return
	}
	if req.CertificateOwnershipToken == "" {
		s.reject(clientID, topic, Rejection{StatusCode: 400, ErrorCode: "InvalidCertificateOwnershipToken", ErrorMessage: "Certificate ownership token cannot be empty."})
		return
	}
	s.mu.Lock()
	p, ok := s.tokens[req.CertificateOwnershipToken]
	used := s.used[req.CertificateOwnershipToken]
	s.mu.Unlock()
	switch {
	case used:
		s.reject(clientID, topic, Rejection{StatusCode: 400, ErrorCode: "InvalidCertificateOwnershipToken", ErrorMessage: "Certificate ownership token has already been used."})
		return
	case !ok || s.opts.Now().After(p.expires):
		s.reject(clientID, topic, Rejection{StatusCode: 400, ErrorCode: "InvalidCertificateOwnershipToken", ErrorMessage: "Certificate ownership token is invalid or expired."})
		return
	}
	thing, rej := thingName(tmpl, req.Parameters)
	if rej != nil {
		s.reject(clientID, topic, *rej)
		return
	}
	s.mu.Lock()
	if s.used[req.CertificateOwnershipToken] { // a concurrent RegisterThing won
		s.mu.Unlock()
		s.reject(clientID, topic, Rejection{StatusCode: 400, ErrorCode: "InvalidCertificateOwnershipToken", ErrorMessage: "Certificate ownership token has already been used."})
		return
	}
	delete(s.tokens, req.CertificateOwnershipToken) // single-use, as on AWS
	s.used[req.CertificateOwnershipToken] = true
	s.registered[p.certID] = thing
	if c := s.certs[p.certID]; c != nil {
		c.status, c.thing = StatusActive, thing
	}
	s.mu.Unlock()
	if s.opts.Registry != nil {
		s.opts.Registry.ActivateThing(p.certDER, thing)
	}
	s.log.Info("thing registered", "thing", thing, "certificate_id", p.certID[:12])
	if s.loseAnswer(StepRegister, clientID) {
		return
	}
	s.reply(clientID, topic, "/accepted", registerAccepted{DeviceConfiguration: tmpl.DeviceConfiguration, ThingName: thing})
}

// thingName applies tmpl to the request parameters.
func thingName(tmpl Template, params map[string]string) (string, *Rejection) {
	for _, k := range append([]string{tmpl.ThingNameParam}, tmpl.Required...) {
		if params[k] == "" {
			return "", &Rejection{StatusCode: 400, ErrorCode: "InvalidParameters", ErrorMessage: fmt.Sprintf("Missing parameter %s.", k)}
		}
	}
	name := tmpl.ThingNamePrefix + params[tmpl.ThingNameParam]
	if len(name) > 128 || strings.IndexFunc(name, badThingRune) >= 0 {
		return "", &Rejection{StatusCode: 400, ErrorCode: "InvalidParameters", ErrorMessage: "Thing name is not valid."}
	}
	return name, nil
}

func badThingRune(r rune) bool {
	ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ':' || r == '_' || r == '-'
	return !ok
}

// handleEvent is the backend rule for a certificate event: the device
// (client ID = thing) reports that old_certificate_id was replaced by
// new_certificate_id. The new one must be ACTIVE for that thing; the old
// one of the same thing (or a PENDING orphan) becomes INACTIVE.
func (s *Server) handleEvent(clientID, topic string, payload []byte) {
	var ev struct {
		Thing string `json:"thing"`
		Old   string `json:"old_certificate_id"`
		New   string `json:"new_certificate_id"`
	}
	if err := json.Unmarshal(payload, &ev); err != nil || ev.Thing != clientID {
		s.log.Warn("certificate event ignored", "client_id", clientID, "topic", topic)
		return
	}
	s.mu.Lock()
	n, o := s.certs[ev.New], s.certs[ev.Old]
	ok := n != nil && n.status == StatusActive && n.thing == clientID && o != nil && ev.Old != ev.New &&
		(o.thing == clientID || o.status == StatusPending)
	if ok {
		o.status = StatusInactive
	}
	s.mu.Unlock()
	if !ok {
		s.log.Warn("certificate event refused", "client_id", clientID)
		return
	}
	if d, isD := s.opts.Registry.(Deactivator); isD {
		d.DeactivateCertificate(o.der)
	}
	s.log.Info("certificate deactivated", "thing", clientID, "certificate_id", ev.Old[:min(12, len(ev.Old))])
}
