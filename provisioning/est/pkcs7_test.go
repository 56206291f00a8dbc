package est

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func testCert(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseOpenSSLCertsOnly(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("testdata", "openssl-certs-only.b64"))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ParseCertsOnlyBase64(b)
	if err != nil {
		t.Fatalf("parse openssl crl2pkcs7 output: %v", err)
	}
	var cns []string
	for _, c := range certs {
		cns = append(cns, c.Subject.CommonName)
	}
	if diff := cmp.Diff([]string{"openssl-est-ca", "openssl-leaf"}, cns); diff != "" {
		t.Errorf("certificates (-want +got):\n%s", diff)
	}
}

func TestCertsOnlyRoundTrip(t *testing.T) {
	t.Parallel()
	in := []*x509.Certificate{testCert(t, "a"), testCert(t, "b")}
	der, err := MarshalCertsOnly(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseCertsOnlyBase64(EncodeBase64(der))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || !out[0].Equal(in[0]) || !out[1].Equal(in[1]) {
		t.Fatalf("round trip changed the certificates")
	}
	if _, err := MarshalCertsOnly(nil); err == nil {
		t.Error("MarshalCertsOnly(nil) succeeded")
	}
}

// TestCertsOnlyOpenSSLReadsOurs checks interoperability the other way:
// openssl must read what MarshalCertsOnly writes.
func TestCertsOnlyOpenSSLReadsOurs(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed; interop check skipped")
	}
	der, err := MarshalCertsOnly([]*x509.Certificate{testCert(t, "interop-check")})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("openssl", "pkcs7", "-inform", "DER", "-print_certs", "-noout")
	cmd.Stdin = bytes.NewReader(der)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("interop-check")) {
		t.Fatalf("openssl pkcs7: %v: %s", err, out)
	}
}

func TestParseCertsOnlyRejects(t *testing.T) {
	t.Parallel()
	valid, err := MarshalCertsOnly([]*x509.Certificate{testCert(t, "x")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"not base64", []byte("!!!")},
		{"raw DER instead of base64", valid},
		{"truncated", EncodeBase64(valid[:len(valid)-3])},
		{"trailing bytes", EncodeBase64(append(append([]byte(nil), valid...), 0))},
		{"certificate not pkcs7", EncodeBase64(testCert(t, "y").Raw)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := ParseCertsOnlyBase64(tt.body); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestDecodeBase64AcceptsLineBreaks(t *testing.T) {
	t.Parallel()
	got, err := DecodeBase64([]byte("aGVs\r\nbG8g\n d29y bGQ=\r\n"))
	if err != nil || string(got) != "hello world" {
		t.Fatalf("DecodeBase64 = %q, %v", got, err)
	}
}

func FuzzParseCertsOnlyBase64(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "openssl-certs-only.b64")); err == nil {
		f.Add(b)
	}
	der, err := MarshalCertsOnly([]*x509.Certificate{testCert(f, "fuzz")})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(EncodeBase64(der))
	f.Add([]byte("MAA="))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, body []byte) {
		certs, err := ParseCertsOnlyBase64(body)
		if err == nil && len(certs) == 0 {
			t.Fatal("success without certificates")
		}
	})
}

func FuzzParseCertsOnlyDER(f *testing.F) {
	der, err := MarshalCertsOnly([]*x509.Certificate{testCert(f, "fuzz")})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		certs, err := ParseCertsOnly(der)
		if err != nil {
			return
		}
		again, err := MarshalCertsOnly(certs)
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		if _, err := ParseCertsOnly(again); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
	})
}
