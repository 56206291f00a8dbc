package agent

import (
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/tcu-agent/tcu-agent/agent/command"
	"github.com/tcu-agent/tcu-agent/agent/config"
	"github.com/tcu-agent/tcu-agent/agent/jobs"
	"github.com/tcu-agent/tcu-agent/agent/profile"
	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/provisioning"
)

// Sections are the config sections owned by the agent's subsystems; they
// are decoded by agent/config with the same strictness as its own.
type Sections struct {
	MQTT         uplink.Config
	Provisioning provisioning.Config
	Commands     command.Config
	Profile      profile.Config
	Jobs         jobs.Config
}

// DefaultSections returns every subsystem's defaults.
func DefaultSections() *Sections {
	return &Sections{
		MQTT:         uplink.DefaultConfig(),
		Provisioning: provisioning.DefaultConfig(),
		Commands:     command.DefaultConfig(),
		Profile:      profile.DefaultConfig(),
		Jobs:         jobs.DefaultConfig(),
	}
}

// Extensions lists the sections for config.Load.
func (s *Sections) Extensions() config.Extensions {
	return config.Extensions{"mqtt": &s.MQTT, "provisioning": &s.Provisioning, "commands": &s.Commands, "profile": &s.Profile, "jobs": &s.Jobs}
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

// RestartSections lists the config sections that differ between the
// running configuration (old, oldSec) and cfg, sec, other than what
// ApplyConfig applies in process: the [[driver]] list (signals, DBC files),
// [telemetry] interval and events, and [agent] log_level. A change to
// [telemetry] max_pending (it also bounds the records held in memory) needs
// a restart. The result is sorted; empty means cfg can be applied live.
func RestartSections(old *config.Config, oldSec *Sections, cfg *config.Config, sec *Sections) []string {
	var changed []string
	oa, na := old.Agent, cfg.Agent
	oa.LogLevel, na.LogLevel = "", ""
	if !reflect.DeepEqual(oa, na) {
		changed = append(changed, "agent")
	}
	if old.Telemetry.MaxPending != cfg.Telemetry.MaxPending {
		changed = append(changed, "telemetry")
	}
	// Every other core section, found by its toml tag so that a section
	// added later is compared too.
	ov, nv := reflect.ValueOf(old).Elem(), reflect.ValueOf(cfg).Elem()
	for i := range ov.NumField() {
		name, _, _ := strings.Cut(ov.Type().Field(i).Tag.Get("toml"), ",")
		switch name {
		case "", "-", "version", "agent", "telemetry":
			continue
		}
		if !reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			changed = append(changed, name)
		}
	}
	oe, ne := oldSec.Extensions(), sec.Extensions()
	for name, p := range oe {
		x, y := reflect.ValueOf(p).Elem().Interface(), reflect.ValueOf(ne[name]).Elem().Interface()
		if name == "commands" && old.Dir != cfg.Dir {
			// Relative key files resolve against each file's directory.
			x, y = commandsResolved(oldSec.Commands, old), commandsResolved(sec.Commands, cfg)
		}
		if !reflect.DeepEqual(x, y) {
			changed = append(changed, name)
		}
	}
	sort.Strings(changed)
	return changed
}

// commandsResolved returns c with every public key that names a file
// replaced by that file's content, for comparing configs from different
// directories.
func commandsResolved(c command.Config, cfg *config.Config) command.Config {
	keys := make([]string, len(c.PublicKeys))
	for i, k := range c.PublicKeys {
		keys[i] = k
		if b, err := os.ReadFile(cfg.ResolvePath(k)); err == nil {
			keys[i] = "file:" + string(b)
		}
	}
	c.PublicKeys = keys
	return c
}
