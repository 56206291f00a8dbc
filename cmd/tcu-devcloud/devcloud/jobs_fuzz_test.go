package devcloud

import (
	"archive/tar"
	"bytes"
	"log/slog"
	"path"
	"strings"
	"testing"
)

// FuzzJobsRequest: any device request on any Jobs API leaves every
// execution in a valid state, with a version that never goes back and a
// terminal status that never changes.
func FuzzJobsRequest(f *testing.F) {
	for _, s := range []struct{ api, body string }{
		{"j/update", `{"status":"IN_PROGRESS","expectedVersion":1,"statusDetails":{"step":"x"},"stepTimeoutInMinutes":5}`},
		{"j/update", `{"status":"SUCCEEDED","clientToken":"t"}`},
		{"start-next", `{"statusDetails":{"a":"b"}}`},
		{"$next/get", `{"includeJobDocument":false}`},
		{"get", ``},
		{"j/get", `{"executionNumber":1}`},
		{"x/y/z", `[`},
	} {
		f.Add(s.api, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, api string, body []byte) {
		c := &Cloud{log: slog.New(slog.DiscardHandler), hook: &hook{}}
		j := newJobs(c, 0)
		defer j.close()
		c.jobs = j
		if err := j.Create(JobSpec{ID: "j", Things: []string{"T1"}, Document: []byte(`{"a":1}`)}); err != nil {
			t.Fatal(err)
		}
		before, _ := j.Execution("T1", "j")
		j.handle("T1", "$aws/things/T1/jobs/"+api, body)
		j.handle("T1", "$aws/things/T1/jobs/"+api, body)
		after, _ := j.Execution("T1", "j")
		switch after.Status {
		case JobQueued, JobInProgress, JobSucceeded, JobFailed, JobRejected:
		default:
			t.Fatalf("status %q after %s %q", after.Status, api, body)
		}
		if after.VersionNumber < before.VersionNumber || after.VersionNumber > before.VersionNumber+2 {
			t.Fatalf("version %d -> %d", before.VersionNumber, after.VersionNumber)
		}
		for k, v := range after.StatusDetails {
			if !detailKeyRe.MatchString(k) || v == "" || len(v) > 4*maxDetailValue {
				t.Fatalf("statusDetails %q=%q accepted", k, v)
			}
		}
	})
}

// FuzzCheckBundle: the bundle checker never panics, and what it accepts
// is a tar of at most 64 relative entries holding tcu-agent.toml.
func FuzzCheckBundle(f *testing.F) {
	b, _ := TarFiles([]string{"tcu-agent.toml", "dbc/v.dbc"}, map[string][]byte{"tcu-agent.toml": []byte("version = 1\n"), "dbc/v.dbc": nil})
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if CheckBundle(b) != nil {
			return
		}
		tr := tar.NewReader(bytes.NewReader(b))
		n, config := 0, false
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			n++
			if strings.HasPrefix(h.Name, "/") || strings.Contains("/"+h.Name+"/", "/../") {
				t.Fatalf("accepted entry %q", h.Name)
			}
			config = config || path.Clean(h.Name) == BundleConfigName
		}
		if n > MaxBundleEntries || !config {
			t.Fatalf("accepted %d entries, config %v", n, config)
		}
	})
}
