package fleetprov_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/fleetprov"
	"github.com/tcu-agent/tcu-agent/provisioning/provisioningtest"
)

// FuzzRequests publishes arbitrary device payloads on every provisioning
// request topic: the server must answer or ignore, never panic or issue a
// certificate for a request that has no valid CSR.
func FuzzRequests(f *testing.F) {
	topics := []string{
		"$aws/certificates/create-from-csr/json",
		"$aws/certificates/create/json",
		"$aws/provisioning-templates/T/provision/json",
		"$aws/provisioning-templates/T/provision/cbor",
	}
	f.Add(uint8(0), []byte(`{"certificateSigningRequest":"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"}`))
	f.Add(uint8(2), []byte(`{"certificateOwnershipToken":"abc","parameters":{"SerialNumber":"1"}}`))
	f.Add(uint8(2), []byte(`{"parameters":{"SerialNumber":"../../x"}}`))
	f.Add(uint8(3), []byte{0xa0})
	ca, key, err := provisioningtest.NewCA("fuzz CA")
	if err != nil {
		f.Fatal(err)
	}
	b := newBroker(ca)
	srv, err := fleetprov.New(fleetprov.Options{Broker: b, CACert: ca, CAKey: key, Logger: slog.New(slog.DiscardHandler),
		Templates: map[string]fleetprov.Template{"T": {ThingNameParam: "SerialNumber"}}})
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	claim := claimPair(f)
	f.Fuzz(func(t *testing.T, which uint8, payload []byte) {
		conn, err := b.Dial(context.Background(), claim, "fuzz")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		before := srv.Issued()
		topic := topics[int(which)%len(topics)]
		if err := conn.Publish(context.Background(), topic, payload); err != nil {
			t.Fatal(err)
		}
		if topic == topics[0] && srv.Issued() != before {
			var req map[string]any
			if json.Unmarshal(payload, &req) != nil {
				t.Fatalf("issued a certificate for undecodable payload %q", payload)
			}
		}
	})
}

func claimPair(tb testing.TB) tls.Certificate {
	tb.Helper()
	dir := tb.TempDir()
	cert, key, err := provisioningtest.WriteClaim(dir)
	if err != nil {
		tb.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		tb.Fatal(err)
	}
	return pair
}

// FuzzESTEnroll posts arbitrary bodies to /simpleenroll.
func FuzzESTEnroll(f *testing.F) {
	f.Add([]byte("MIIB"))
	f.Add([]byte("not base64 !"))
	f.Add([]byte(""))
	ca, key, err := provisioningtest.NewCA("fuzz CA")
	if err != nil {
		f.Fatal(err)
	}
	srv, err := fleetprov.New(fleetprov.Options{Broker: newBroker(ca), CACert: ca, CAKey: key,
		ESTUsers: map[string]string{"u": "p"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	h := srv.ESTHandler()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/.well-known/est/simpleenroll", bytes.NewReader(body))
		req.SetBasicAuth("u", "p")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}
