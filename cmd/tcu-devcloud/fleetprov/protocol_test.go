package fleetprov_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/fleetprov"
	"github.com/tcu-agent/tcu-agent/provisioning"
	"github.com/tcu-agent/tcu-agent/provisioning/provisioningtest"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// exchange subscribes to topic's answers, publishes payload and returns
// the answer's suffix and decoded body.
func exchange(t *testing.T, conn provisioning.Conn, topic string, payload any) (string, map[string]any) {
	t.Helper()
	type msg struct {
		topic string
		body  []byte
	}
	ch := make(chan msg, 2)
	for _, s := range []string{"/accepted", "/rejected"} {
		if err := conn.Subscribe(context.Background(), topic+s, func(tp string, b []byte) { ch <- msg{tp, b} }); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.Marshal(payload)
	if err := conn.Publish(context.Background(), topic, b); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-ch:
		var body map[string]any
		if err := json.Unmarshal(m.body, &body); err != nil {
			t.Fatalf("answer on %s is not JSON: %v", m.topic, err)
		}
		return m.topic[len(topic):], body
	case <-time.After(10 * time.Second):
		t.Fatalf("no answer on %s", topic)
		return "", nil
	}
}

func TestProtocolPayloadsAndTokenExpiry(t *testing.T) {
	t.Parallel()
	ca, caKey, err := provisioningtest.NewCA("protocol CA")
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Now()}
	b := newBroker(ca)
	srv, err := fleetprov.New(fleetprov.Options{Broker: b, Registry: b, CACert: ca, CAKey: caKey, Now: clk.Now,
		Logger:    slog.New(slog.DiscardHandler),
		Templates: map[string]fleetprov.Template{"T": {ThingNameParam: "SerialNumber", DeviceConfiguration: map[string]string{"k": "v"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	conn, err := b.Dial(context.Background(), claimPair(t), "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "dev-1"}}, key)
	csrPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))
	suffix, acc := exchange(t, conn, "$aws/certificates/create-from-csr/json", map[string]string{"certificateSigningRequest": csrPEM})
	if suffix != "/accepted" {
		t.Fatalf("create-from-csr answered on %s: %v", suffix, acc)
	}
	if id, _ := acc["certificateId"].(string); len(id) != 64 {
		t.Errorf("certificateId %q, want 64 hex characters", id)
	}
	if _, ok := acc["privateKey"]; ok {
		t.Error("CreateCertificateFromCsr answer carries a privateKey")
	}
	token := acc["certificateOwnershipToken"]
	reg := "$aws/provisioning-templates/T/provision/json"

	clk.Add(61 * time.Minute) // AWS tokens expire after an hour
	suffix, rej := exchange(t, conn, reg, map[string]any{"certificateOwnershipToken": token, "parameters": map[string]string{"SerialNumber": "1"}})
	if suffix != "/rejected" || rej["errorCode"] != "InvalidCertificateOwnershipToken" || rej["statusCode"] != float64(400) {
		t.Errorf("expired token answered %s %v", suffix, rej)
	}

	suffix, acc = exchange(t, conn, "$aws/certificates/create/json", map[string]string{})
	if suffix != "/accepted" || acc["privateKey"] == nil {
		t.Fatalf("create answered %s %v", suffix, acc)
	}
	suffix, got := exchange(t, conn, reg, map[string]any{"certificateOwnershipToken": acc["certificateOwnershipToken"], "parameters": map[string]string{"SerialNumber": "1"}})
	want := map[string]any{"thingName": "1", "deviceConfiguration": map[string]any{"k": "v"}}
	if diff := cmp.Diff(want, got); suffix != "/accepted" || diff != "" {
		t.Errorf("RegisterThing answered %s (-want +got):\n%s", suffix, diff)
	}
}
