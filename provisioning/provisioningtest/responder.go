package provisioningtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Topics, exactly as AWS IoT (json format).
const (
	topicCreateKeys = "$aws/certificates/create/json"
	topicCreateCSR  = "$aws/certificates/create-from-csr/json"
)

type answer struct {
	accepted bool
	body     any
}

// handle answers one published request.
func (f *Fake) handle(c *conn, topic string, payload []byte) {
	if strings.HasSuffix(topic, "/certificate/rotated") {
		f.certificateEvent(c, payload)
		return
	}
	step := StepCreate
	if strings.HasPrefix(topic, "$aws/provisioning-templates/") {
		step = StepRegister
	}
	if !c.subscribed(topic+"/accepted") || !c.subscribed(topic+"/rejected") {
		f.violation("%s published before subscribing to its answers", topic)
	}
	k := f.knobsNow()
	if k.Timeout {
		return
	}
	if f.shouldDrop(k, step) {
		c.drop()
		return
	}
	var a answer
	switch {
	case topic == topicCreateKeys:
		a = f.createKeys(k)
	case topic == topicCreateCSR:
		a = f.createFromCSR(k, payload)
	case step == StepRegister && strings.HasSuffix(topic, "/provision/json"):
		a = f.register(k, topic, payload)
	default:
		return // not a provisioning request; nobody answers
	}
	suffix := "/rejected"
	if a.accepted {
		suffix = "/accepted"
	}
	b, _ := json.Marshal(a.body)
	c.deliver(topic+suffix, b, k.Delay)
}

func (f *Fake) shouldDrop(k Knobs, step string) bool {
	if k.Drop != step {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if k.DropCount > 0 && f.dropped >= k.DropCount {
		return false
	}
	f.dropped++
	return true
}

func reject(r Rejection) answer { return answer{false, r} }

func (f *Fake) createKeys(k Knobs) answer {
	if k.RejectCreate != nil {
		return reject(*k.RejectCreate)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return reject(Rejection{500, "InternalFailure", "key generation failed"})
	}
	der, _ := x509.MarshalECPrivateKey(key)
	a := f.mint(key.Public(), "provisioningtest-generated")
	if a.accepted {
		body := a.body.(map[string]string)
		body["privateKey"] = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	}
	return a
}

func (f *Fake) createFromCSR(k Knobs, payload []byte) answer {
	if k.RejectCreate != nil {
		return reject(*k.RejectCreate)
	}
	var req struct {
		CSR string `json:"certificateSigningRequest"`
	}
	if err := json.Unmarshal(payload, &req); err != nil {
		return reject(Rejection{400, "InvalidPayload", "payload is not JSON"})
	}
	b, _ := pem.Decode([]byte(req.CSR))
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return reject(Rejection{400, "InvalidPayload", "CSR is malformed"})
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		return reject(Rejection{400, "InvalidPayload", "CSR is malformed"})
	}
	return f.mint(csr.PublicKey, csr.Subject.CommonName)
}

// mint issues a certificate and its ownership token.
func (f *Fake) mint(pub crypto.PublicKey, cn string) answer {
	der, err := f.Issue(pub, cn)
	if err != nil {
		return reject(Rejection{500, "InternalFailure", err.Error()})
	}
	sum := sha256.Sum256(der)
	id := hex.EncodeToString(sum[:])
	if err := f.update(func(reg map[string]*Certificate) bool {
		reg[id] = &Certificate{ID: id, Status: StatusPending, Minted: time.Now()}
		return true
	}); err != nil {
		return reject(Rejection{500, "InternalFailure", err.Error()})
	}
	return answer{true, map[string]string{
		"certificateId":             id,
		"certificatePem":            string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		"certificateOwnershipToken": f.token(sum[:]),
	}}
}

// Issue signs a client certificate for pub with the fake's CA and counts
// it as minted.
func (f *Fake) Issue(pub crypto.PublicKey, cn string) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	now := f.opts.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(f.opts.Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, f.opts.CA, pub, f.opts.CAKey)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	f.mu.Lock()
	f.minted++
	f.mu.Unlock()
	if f.opts.OnMint != nil {
		f.opts.OnMint(der)
	}
	return der, nil
}

// token returns "<expiry unix>.<cert sha256 hex>.<hmac>".
func (f *Fake) token(certSum []byte) string {
	body := strconv.FormatInt(f.opts.Now().Add(time.Hour).Unix(), 10) + "." + hex.EncodeToString(certSum)
	return base64.RawURLEncoding.EncodeToString([]byte(body)) + "." + f.mac(body)
}

func (f *Fake) mac(body string) string {
	m := hmac.New(sha256.New, f.opts.TokenKey)
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

// checkToken validates a token's MAC and expiry and returns the ID of the
// certificate it belongs to.
func (f *Fake) checkToken(tok string) (string, bool) {
	enc, sig, ok := strings.Cut(tok, ".")
	if !ok {
		return "", false
	}
	body, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || !hmac.Equal([]byte(f.mac(string(body))), []byte(sig)) {
		return "", false
	}
	exp, id, _ := strings.Cut(string(body), ".")
	unix, err := strconv.ParseInt(exp, 10, 64)
	return id, err == nil && f.opts.Now().Unix() < unix
}

func certID(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// certificateEvent is the backend rule for certificate events: the
// session's certificate must be the event's new certificate, ACTIVE for
// the same thing; then the old one of that thing becomes INACTIVE.
func (f *Fake) certificateEvent(c *conn, payload []byte) {
	var ev struct {
		Old string `json:"old_certificate_id"`
		New string `json:"new_certificate_id"`
	}
	if json.Unmarshal(payload, &ev) != nil || ev.New != c.certID {
		f.violation("certificate event from %s not signed by its new certificate", c.clientID)
		return
	}
	_ = f.update(func(reg map[string]*Certificate) bool {
		n, o := reg[ev.New], reg[ev.Old]
		if n == nil || n.Status != StatusActive || o == nil || o.Thing != n.Thing && o.Status != StatusPending {
			return false
		}
		o.Status = StatusInactive
		return true
	})
}

func (f *Fake) register(k Knobs, topic string, payload []byte) answer {
	if k.RejectRegister != nil {
		return reject(*k.RejectRegister)
	}
	tmpl := strings.TrimSuffix(strings.TrimPrefix(topic, "$aws/provisioning-templates/"), "/provision/json")
	if !slices.Contains(f.opts.Templates, tmpl) {
		return reject(Rejection{404, "ResourceNotFound", "The provisioning template does not exist."})
	}
	var req struct {
		Token  string            `json:"certificateOwnershipToken"`
		Params map[string]string `json:"parameters"`
	}
	if err := json.Unmarshal(payload, &req); err != nil {
		return reject(Rejection{400, "InvalidPayload", "payload is not JSON"})
	}
	if req.Token == "" {
		return reject(Rejection{400, "InvalidCertificateOwnershipToken", "Certificate ownership token cannot be empty."})
	}
	id, ok := f.checkToken(req.Token)
	if !ok {
		return reject(Rejection{400, "InvalidCertificateOwnershipToken", "Certificate ownership token is invalid or expired."})
	}
	serial := req.Params["SerialNumber"]
	if serial == "" {
		return reject(Rejection{400, "InvalidParameters", "Missing parameter SerialNumber."})
	}
	thing := f.opts.ThingPrefix + serial
	var rej *Rejection
	if err := f.update(func(reg map[string]*Certificate) bool {
		c := reg[id]
		if c == nil || c.Status != StatusPending {
			rej = &Rejection{400, "InvalidCertificateOwnershipToken", "Certificate ownership token has already been used."}
			return false
		}
		c.Status, c.Thing = StatusActive, thing
		return true
	}); err != nil {
		return reject(Rejection{500, "InternalFailure", err.Error()})
	}
	if rej != nil {
		return reject(*rej)
	}
	f.mu.Lock()
	f.things = append(f.things, thing)
	f.mu.Unlock()
	return answer{true, map[string]any{
		"deviceConfiguration": map[string]string{"Vin": req.Params["Vin"]},
		"thingName":           thing,
	}}
}
