package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// runCLI runs the CLI in-process and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// configVerbs are the verbs that read the configuration: each takes
// --config.
var configVerbs = []string{"check-config", "log-level", "provision", "run", "status"}

// TestCLIConventions checks the conventions over every verb and flag:
// -h/--help exit 0 with the verb's usage (listing each of its flags) on
// stdout; an unknown flag and a wrong number of operands exit 2 with the
// problem and the usage on stderr; the verbs that read the configuration
// take --config and exit 78 when it is invalid.
func TestCLIConventions(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("version = 1\n[agent]\nlog_format = \"xml\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var withConfig []string
	for _, verb := range verbNames() {
		c := subcommands[verb]
		fs, _ := c.flagSet()
		var flags []string
		fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f.Name) })
		if fs.Lookup("config") != nil {
			withConfig = append(withConfig, verb)
		}
		t.Run(verb, func(t *testing.T) {
			t.Parallel()
			for _, h := range []string{"-h", "--help", "-help"} {
				code, out, errs := runCLI(t, verb, h)
				if code != 0 || !strings.HasPrefix(out, "usage: tcu-agent "+verb) || errs != "" {
					t.Errorf("%s %s: exit %d, stdout %q, stderr %q; want 0 and usage on stdout", verb, h, code, out, errs)
				}
				for _, f := range flags {
					if !strings.Contains(out, "--"+f) {
						t.Errorf("%s %s: usage does not list --%s:\n%s", verb, h, f, out)
					}
				}
			}
			if code, out, _ := runCLI(t, "help", verb); code != 0 || !strings.HasPrefix(out, "usage: tcu-agent "+verb) {
				t.Errorf("help %s: exit %d, %q", verb, code, out)
			}
			code, out, errs := runCLI(t, verb, "--no-such-flag")
			if code != 2 || out != "" || !strings.Contains(errs, "no-such-flag") || !strings.Contains(errs, "usage: tcu-agent "+verb) {
				t.Errorf("%s --no-such-flag: exit %d, stdout %q, stderr %q; want 2, the problem and usage", verb, code, out, errs)
			}
			// Operand counts just outside the allowed range.
			var wrong [][]string
			if c.maxArgs >= 0 {
				wrong = append(wrong, slices.Repeat([]string{"stray"}, c.maxArgs+1))
			}
			if c.minArgs > 0 {
				wrong = append(wrong, nil)
			}
			for _, args := range wrong {
				code, _, errs := runCLI(t, append([]string{verb}, args...)...)
				if code != 2 || !strings.Contains(errs, "usage: tcu-agent "+verb) {
					t.Errorf("%s %q: exit %d, stderr %q; want 2 and usage", verb, args, code, errs)
				}
			}
			if fs.Lookup("config") != nil {
				code, _, errs := runCLI(t, verb, "--config", bad)
				if code != 78 || !strings.Contains(errs, "bad.toml:3") {
					t.Errorf("%s --config BAD: exit %d, stderr %q; want 78 naming bad.toml:3", verb, code, errs)
				}
			}
		})
	}
	if !slices.Equal(withConfig, configVerbs) {
		t.Errorf("verbs with --config = %q, want %q", withConfig, configVerbs)
	}
}

// TestCLITopLevel checks the bare command: help and version flags, the
// usage listing every verb, unknown verbs and stray arguments.
func TestCLITopLevel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string // prefix of stdout
		wantErr  string // substring of stderr
	}{
		{args: []string{"--help"}, wantOut: "usage: tcu-agent [VERB]"},
		{args: []string{"-h"}, wantOut: "usage: tcu-agent [VERB]"},
		{args: []string{"help"}, wantOut: "usage: tcu-agent [VERB]"},
		{args: []string{"--version"}, wantOut: "tcu-agent " + version + "\n"},
		{args: []string{"-version"}, wantOut: "tcu-agent " + version + "\n"},
		{args: []string{"version"}, wantOut: "tcu-agent " + version + "\n"},
		{args: []string{"version", "extra"}, wantCode: 2, wantErr: `unexpected argument "extra"`},
		{args: []string{"--version", "extra"}, wantCode: 2, wantErr: `unexpected argument "extra"`},
		{args: []string{"frobnicate"}, wantCode: 2, wantErr: `unknown verb "frobnicate"`},
		{args: []string{"help", "frobnicate"}, wantCode: 2, wantErr: `unknown verb "frobnicate"`},
		// The issue: `tcu-agent run configs/demo.toml` ignored the file.
		{args: []string{"run", "../../configs/demo.toml"}, wantCode: 2, wantErr: `unexpected argument "../../configs/demo.toml"`},
		{args: []string{"--config", "/nonexistent/tcu-agent.toml"}, wantCode: 78, wantErr: "tcu-agent run: read config"},
		{args: []string{"check-config", "../../configs/demo.toml"}, wantOut: "../../configs/demo.toml: ok"},
		{args: []string{"check-config", "--config", "../../configs/demo.toml"}, wantOut: "../../configs/demo.toml: ok"},
		{args: []string{"check-config", "--config", "a.toml", "b.toml"}, wantCode: 2, wantErr: "give one"},
		{args: []string{"log-level", "verbose"}, wantCode: 2, wantErr: `log level "verbose"`},
		{args: []string{"log-level", "--socket", "/nonexistent/ctl.sock"}, wantCode: 3, wantErr: "agent not running"},
		{args: []string{"completion", "zsh"}, wantCode: 2, wantErr: `shell "zsh" not supported`},
	}
	for _, tt := range tests {
		code, out, errs := runCLI(t, tt.args...)
		if code != tt.wantCode || !strings.HasPrefix(out, tt.wantOut) || !strings.Contains(errs, tt.wantErr) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d, stdout %q..., stderr ...%q...",
				tt.args, code, out, errs, tt.wantCode, tt.wantOut, tt.wantErr)
		}
	}
	_, out, _ := runCLI(t, "--help")
	for _, verb := range verbNames() {
		if !strings.Contains(out, "\n  "+verb+" ") {
			t.Errorf("usage does not list verb %s:\n%s", verb, out)
		}
	}
}

// TestProvisionConfigError: provision exits 78 on a configuration error.
func TestProvisionConfigError(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tcu-agent.toml")
	if err := os.WriteFile(path, []byte("version = 1\n[provisioning]\nmethod = \"carrier-pigeon\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI(t, "provision", "--config", path); code != 78 {
		t.Errorf("provision with a bad config: exit %d, stderr %q; want 78", code, errs)
	}
}

// TestManAndCompletion checks that the man page and the bash completion
// name every verb and every flag, and that the completion is valid bash
// that completes verbs, flags and levels.
func TestManAndCompletion(t *testing.T) {
	t.Parallel()
	_, man, _ := runCLI(t, "man")
	_, comp, _ := runCLI(t, "completion", "bash")
	if !strings.HasPrefix(man, ".TH TCU-AGENT 1") {
		t.Fatalf("man page does not start with .TH: %q", man[:min(len(man), 40)])
	}
	for _, verb := range verbNames() {
		if !strings.Contains(man, `.SS "tcu\-agent `+strings.ReplaceAll(verb, "-", `\-`)) {
			t.Errorf("man page lacks verb %s", verb)
		}
		if !strings.Contains(comp, "\t"+verb+") ") {
			t.Errorf("completion lacks verb %s", verb)
		}
		fs, _ := subcommands[verb].flagSet()
		fs.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(man, `.B \-\-`+strings.ReplaceAll(f.Name, "-", `\-`)) {
				t.Errorf("man page lacks %s --%s", verb, f.Name)
			}
			if !strings.Contains(comp, "--"+f.Name) {
				t.Errorf("completion lacks %s --%s", verb, f.Name)
			}
		})
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	// complete LINE: the candidates the function offers for the last word.
	complete := func(line string) []string {
		t.Helper()
		words := strings.Split(line, " ")
		script := comp + "\nCOMP_WORDS=(" + line + ")\nCOMP_CWORD=" + strconv.Itoa(len(words)-1) +
			"\n_tcu_agent\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		cmd := exec.Command(bash, "--norc", "-c", script)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	if got := complete("tcu-agent log"); !slices.Equal(got, []string{"log-level"}) {
		t.Errorf("complete 'tcu-agent log' = %q", got)
	}
	if got := complete("tcu-agent status --j"); !slices.Equal(got, []string{"--json"}) {
		t.Errorf("complete 'tcu-agent status --j' = %q", got)
	}
	if got := complete("tcu-agent log-level d"); !slices.Equal(got, []string{"debug"}) {
		t.Errorf("complete 'tcu-agent log-level d' = %q", got)
	}
	if got := complete("tcu-agent --v"); !slices.Equal(got, []string{"--version"}) {
		t.Errorf("complete 'tcu-agent --v' = %q", got)
	}
}
