package main

import (
	"flag"

	"github.com/tcu-agent/tcu-agent/agent"
	"github.com/tcu-agent/tcu-agent/agent/config"
)

// configFlags are the flags of the verbs that run against a configuration:
// --config and (for run and provision) --state-dir.
type configFlags struct {
	path     string
	stateDir string
}

// addConfigFlags defines --config (default defaultConfigPath) and, with
// withStateDir, --state-dir on fs.
func addConfigFlags(fs *flag.FlagSet, withStateDir bool) *configFlags {
	cf := &configFlags{}
	fs.StringVar(&cf.path, "config", defaultConfigPath, "configuration `file`")
	if withStateDir {
		fs.StringVar(&cf.stateDir, "state-dir", "", "override [agent] state_dir with `dir` (e.g. $STATE_DIRECTORY)")
	}
	return cf
}

// load loads the configuration (errors: exit code 78, see loadConfig) and
// applies --state-dir.
func (cf *configFlags) load() (*config.Config, *agent.Sections, error) {
	cfg, sec, err := loadConfig(cf.path)
	if err != nil {
		return nil, nil, err
	}
	if cf.stateDir != "" {
		cfg.Agent.StateDir = cf.stateDir
	}
	return cfg, sec, nil
}
