package agent

import (
	"strings"

	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/agent/config"
	"github.com/tcu-agent/tcu-agent/agent/jobs"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/provisioning"
)

// Sections are the config sections owned by the agent's subsystems; they
// are decoded by agent/config with the same strictness as its own.
type Sections struct {
	MQTT         uplink.Config
	Provisioning provisioning.Config
	Commands     command.Config
	Jobs         jobs.Config
}

// DefaultSections returns every subsystem's defaults.
func DefaultSections() *Sections {
	return &Sections{
		MQTT:         uplink.DefaultConfig(),
		Provisioning: provisioning.DefaultConfig(),
		Commands:     command.DefaultConfig(),
		Jobs:         jobs.DefaultConfig(),
	}
}

// Extensions lists the sections for config.Load.
func (s *Sections) Extensions() config.Extensions {
	return config.Extensions{"mqtt": &s.MQTT, "provisioning": &s.Provisioning, "commands": &s.Commands, "jobs": &s.Jobs}
}

// LoadConfig loads and validates path with every section this build knows.
func LoadConfig(path string) (*config.Config, *Sections, error) {
	sec := DefaultSections()
	cfg, err := config.Load(path, sec.Extensions())
	if err != nil {
		return nil, nil, err
	}
	if !cfg.Present["provisioning"] && !sec.devIdentity(cfg) {
		return nil, nil, &config.Error{File: cfg.File, Line: 1, Key: "provisioning",
			Msg: "no [provisioning] section: the agent has no way to get an identity (only a tcp:// development broker with [agent] thing_name works without one)"}
	}
	sec.resolvePaths(cfg)
	return cfg, sec, nil
}

// resolvePaths makes the sections' file paths absolute relative to the
// config file's directory.
func (s *Sections) resolvePaths(cfg *config.Config) {
	p := &s.Provisioning
	for _, f := range []*string{&p.ClaimCert, &p.ClaimKey, &p.ESTCAFile, &p.ESTPasswordFile, &p.CertFile, &p.KeyFile, &s.MQTT.CAFile, &s.Jobs.CAFile} {
		*f = cfg.ResolvePath(*f)
	}
}

// devIdentity reports whether the agent may run without an identity: a
// plaintext development broker and a configured thing name.
func (s *Sections) devIdentity(cfg *config.Config) bool {
	return strings.HasPrefix(s.MQTT.Broker, "tcp://") && s.MQTT.AllowPlaintext && cfg.Agent.ThingName != ""
}
