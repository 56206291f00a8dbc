package provisioning_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pelletier/go-toml/v2"

	"github.com/tcu-agent/tcu-agent/provisioning"
)

func TestConfigDecodesTOML(t *testing.T) {
	t.Parallel()
	const doc = `
method = "est"
est_url = "https://est.example/.well-known/est"
serial_number = "SN1"
renew_before = "48h"
parameters = { Fleet = "berlin" }
`
	cfg := provisioning.DefaultConfig()
	d := toml.NewDecoder(strings.NewReader(doc))
	d.DisallowUnknownFields()
	if err := d.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := provisioning.DefaultConfig()
	want.Method, want.ESTURL, want.SerialNumber = "est", "https://est.example/.well-known/est", "SN1"
	want.RenewBefore = provisioning.Duration(48 * time.Hour)
	want.Parameters = map[string]string{"Fleet": "berlin"}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("decoded config (-want +got):\n%s", diff)
	}
	out, err := toml.Marshal(cfg)
	if err != nil || !strings.Contains(string(out), `renew_before = '48h0m0s'`) {
		t.Errorf("Marshal = %s, %v", out, err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	fleet := provisioning.DefaultConfig()
	fleet.ClaimCert, fleet.ClaimKey, fleet.Template, fleet.SerialNumber = "c", "k", "T", "SN"
	tests := []struct {
		name    string
		mutate  func(*provisioning.Config)
		wantErr string
	}{
		{"valid fleet", func(*provisioning.Config) {}, ""},
		{"unknown method", func(c *provisioning.Config) { c.Method = "magic" }, "method"},
		{"fleet without claim", func(c *provisioning.Config) { c.ClaimKey = "" }, "claim_cert"},
		{"fleet without template", func(c *provisioning.Config) { c.Template = "" }, "template"},
		{"bad key mode", func(c *provisioning.Config) { c.KeyMode = "tpm" }, "key_mode"},
		{"no serial", func(c *provisioning.Config) { c.SerialNumber = "" }, "serial_number"},
		{"est without url", func(c *provisioning.Config) { c.Method = "est" }, "est_url"},
		{"static without files", func(c *provisioning.Config) { c.Method = "static" }, "cert_file"},
		{"retry bounds", func(c *provisioning.Config) { c.RetryMax = 1 }, "retry_max"},
		{"zero limits", func(c *provisioning.Config) { c.MaxCertificates = 0 }, "max_certificates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := fleet
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate = %v, want an error mentioning %q", err, tt.wantErr)
			}
		})
	}
}
