package provisioning

import (
	"errors"
	"fmt"
	"time"

	"github.com/tcu-agent/tcu-agent/internal/units"
)

// Provisioning methods (Config.Method).
const (
	MethodFleet  = "fleet"
	MethodEST    = "est"
	MethodStatic = "static"
)

// Key modes (Config.KeyMode).
const (
	KeyModeCSR        = "csr"
	KeyModeCreateKeys = "create-keys"
)

// Duration is a time.Duration that reads and writes as "720h" in TOML.
type Duration = units.Duration

// Config is the [provisioning] section of tcu-agent.toml.
type Config struct {
	// Method is "fleet" (claim certificate, default), "est" or "static".
	Method string `toml:"method"`
	// KeyMode is "csr" (key generated on the device, default) or
	// "create-keys" (AWS generates it; fleet only).
	KeyMode string `toml:"key_mode"`
	// ClaimCert and ClaimKey are the shared bootstrap credential (PEM).
	// For EST they are the optional TLS client certificate.
	ClaimCert string `toml:"claim_cert"`
	ClaimKey  string `toml:"claim_key"`
	// ClaimClientID is the MQTT client ID of the claim session; empty
	// means SerialNumber.
	ClaimClientID string `toml:"claim_client_id"`
	// Template is the fleet provisioning template name.
	Template string `toml:"template"`
	// RenewTemplate is the template RegisterThing uses on renewal; empty
	// means Template.
	RenewTemplate string `toml:"renew_template"`
	// Parameters are sent with RegisterThing besides SerialNumber,
	// HardwareModel and what Options.DeviceParams reports (e.g. Vin).
	Parameters    map[string]string `toml:"parameters"`
	SerialNumber  string            `toml:"serial_number"`
	HardwareModel string            `toml:"hardware_model"`

	// ESTURL is the EST base URL, e.g. https://est.example:8443/.well-known/est.
	ESTURL string `toml:"est_url"`
	// ESTCAFile is the trust anchor for the EST server (PEM); empty means
	// the system pool.
	ESTCAFile       string `toml:"est_ca_file"`
	ESTUsername     string `toml:"est_username"`
	ESTPasswordFile string `toml:"est_password_file"`

	// CertFile, KeyFile and ThingName are a pre-installed identity
	// (method "static"); ThingName empty means the certificate's CN.
	// For method "fleet" ThingName is the thing name the template is
	// expected to give (empty means SerialNumber): after an interrupted
	// RegisterThing the device connects with the certificate as that
	// thing to learn whether the registration went through.
	CertFile  string `toml:"cert_file"`
	KeyFile   string `toml:"key_file"`
	ThingName string `toml:"thing_name"`

	// RenewBefore is how long before expiry the certificate is renewed;
	// 0 disables automatic renewal.
	RenewBefore Duration `toml:"renew_before"`
	// StepTimeout bounds each request/answer exchange.
	StepTimeout Duration `toml:"step_timeout"`
	// RetryMin and RetryMax bound the exponential backoff between attempts.
	RetryMin Duration `toml:"retry_min"`
	RetryMax Duration `toml:"retry_max"`
	// MaxRejections is how many consecutive non-transient rejections end
	// Ensure with ErrRejected; RejectHold is how long later calls then
	// return ErrRejected at once (survives restarts).
	MaxRejections int      `toml:"max_rejections"`
	RejectHold    Duration `toml:"reject_hold"`
	// MaxCertificates is the loop breaker: at most this many create
	// requests per LoopWindow.
	MaxCertificates int      `toml:"max_certificates"`
	LoopWindow      Duration `toml:"loop_window"`
}

// DefaultConfig returns the defaults every file decodes over.
func DefaultConfig() Config {
	return Config{
		Method:          MethodFleet,
		KeyMode:         KeyModeCSR,
		RenewBefore:     Duration(720 * time.Hour),
		StepTimeout:     Duration(30 * time.Second),
		RetryMin:        Duration(5 * time.Second),
		RetryMax:        Duration(15 * time.Minute),
		MaxRejections:   3,
		RejectHold:      Duration(6 * time.Hour),
		MaxCertificates: 5,
		LoopWindow:      Duration(24 * time.Hour),
	}
}

// Validate reports configuration errors; it does no I/O.
func (c Config) Validate() error {
	var errs []error
	switch c.Method {
	case MethodFleet:
		if c.ClaimCert == "" || c.ClaimKey == "" {
			errs = append(errs, errors.New("fleet method needs claim_cert and claim_key"))
		}
		if c.Template == "" {
			errs = append(errs, errors.New("fleet method needs template"))
		}
		if c.KeyMode != KeyModeCSR && c.KeyMode != KeyModeCreateKeys {
			errs = append(errs, fmt.Errorf("key_mode %q: want %q or %q", c.KeyMode, KeyModeCSR, KeyModeCreateKeys))
		}
	case MethodEST:
		if c.ESTURL == "" {
			errs = append(errs, errors.New("est method needs est_url"))
		}
		if (c.ClaimCert == "") != (c.ClaimKey == "") {
			errs = append(errs, errors.New("claim_cert and claim_key go together"))
		}
	case MethodStatic:
		if c.CertFile == "" || c.KeyFile == "" {
			errs = append(errs, errors.New("static method needs cert_file and key_file"))
		}
	default:
		errs = append(errs, fmt.Errorf("method %q: want fleet, est or static", c.Method))
	}
	if c.Method != MethodStatic && c.SerialNumber == "" && c.ClaimClientID == "" {
		errs = append(errs, errors.New("serial_number is required"))
	}
	if c.StepTimeout <= 0 || c.RetryMin <= 0 || c.RetryMax < c.RetryMin {
		errs = append(errs, errors.New("step_timeout, retry_min and retry_max must be positive and retry_max >= retry_min"))
	}
	if c.MaxRejections < 1 || c.MaxCertificates < 1 {
		errs = append(errs, errors.New("max_rejections and max_certificates must be at least 1"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("provisioning config: %w", err)
	}
	return nil
}
