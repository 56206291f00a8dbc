package provisioning

import (
	"os"
	"path/filepath"
	"testing"
)

// Seeds are the payload shapes of aws-iot-reference.md §1.8.
const (
	seedCreateAccepted = `{"certificateId":"9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0","certificatePem":"-----BEGIN CERTIFICATE-----\nMIICuzCCAaOgAwIBAgIVAExample...\n-----END CERTIFICATE-----\n","certificateOwnershipToken":"eyJ2ZXJzaW9uIjoiMjAxOS0wNS0yOCIsImV4YW1wbGUiOnRydWV9"}`
	seedKeysAccepted   = `{"certificateId":"4b9e","certificatePem":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n","privateKey":"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n","certificateOwnershipToken":"eyJ2"}`
	seedRegister       = `{"deviceConfiguration":{"TelemetryTopic":"dt/tcu/TCU-00042","UploadIntervalSec":"30"},"thingName":"TCU-00042"}`
	seedRejected       = `{"statusCode":400,"errorCode":"InvalidCertificateOwnershipToken","errorMessage":"Certificate ownership token cannot be empty."}`
)

func FuzzParseCreateResponse(f *testing.F) {
	for _, s := range []string{seedCreateAccepted, seedKeysAccepted, `{}`, `null`, `{"certificatePem":1}`} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, b []byte, wantKey bool) {
		r, cert, err := parseCreateResponse(b, wantKey)
		if err != nil {
			return
		}
		if cert == nil || r.CertificateOwnershipToken == "" || (wantKey && r.PrivateKey == "") {
			t.Fatalf("accepted an incomplete response: %+v", r)
		}
	})
}

func FuzzParseRegisterResponse(f *testing.F) {
	for _, s := range []string{seedRegister, `{"thingName":""}`, `{"thingName":"a/b"}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRegisterResponse(b)
		if err == nil && !validThingName(r.ThingName) {
			t.Fatalf("accepted thing name %q", r.ThingName)
		}
	})
}

func FuzzParseRejected(f *testing.F) {
	for _, s := range []string{seedRejected, `{"statusCode":"x"}`, ``, `{"statusCode":429}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := parseRejected("register", b)
		if r == nil || r.Op != "register" || r.Error() == "" {
			t.Fatalf("parseRejected = %+v", r)
		}
	})
}

// FuzzReadState feeds arbitrary bytes as provisioning.json: the state
// machine must start over or resume, never fail to load.
func FuzzReadState(f *testing.F) {
	f.Add([]byte(`{"version":1,"step":"cert_created","key_file":"key-a.pem","cert_file":"cert-a.pem","creates":["2026-11-22T00:00:00Z"]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, stateFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := readState(dir)
		if err != nil || st == nil || st.Version != stateVersion {
			t.Fatalf("readState = %+v, %v", st, err)
		}
		if !st.sane(dir) {
			t.Fatalf("readState returned an inconsistent state: %+v", st)
		}
	})
}
