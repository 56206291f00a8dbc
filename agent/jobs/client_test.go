package jobs_test

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tcu-agent/tcu-agent/agent/jobs"
	"github.com/tcu-agent/tcu-agent/agent/jobs/jobstest"
)

// recorder is a Handler that records the jobs it ran and finishes them
// with a fixed status (unless finish is empty: left IN_PROGRESS).
type recorder struct {
	mu     sync.Mutex
	ran    []string
	errs   []error
	finish string
	before func(j *jobs.Job) // called before the final update
	done   chan string
}

func (r *recorder) Run(ctx context.Context, j *jobs.Job) {
	err := j.Update(ctx, jobs.StatusInProgress, map[string]string{"step": "verifying"})
	if err == nil && r.before != nil {
		r.before(j)
	}
	if err == nil && r.finish != "" {
		err = j.Update(ctx, r.finish, map[string]string{"reason": "ok", "version": "v1"})
	}
	r.mu.Lock()
	r.ran = append(r.ran, j.JobID)
	r.errs = append(r.errs, err)
	r.mu.Unlock()
	r.done <- j.JobID
}

func start(t *testing.T, svc *jobstest.Service, h jobs.Handler) (*jobs.Client, context.CancelFunc) {
	t.Helper()
	c, err := jobs.New(jobs.Options{Thing: "TCU-1", Publisher: svc, Handler: h, Connects: svc.Connects,
		Resync: 10 * time.Millisecond, RequestTimeout: 200 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	svc.Deliver = c.HandleMessage
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done } // the client has stopped when it returns
	t.Cleanup(stop)
	return c, stop
}

func wait(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case id := <-ch:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not run within 10s")
		return ""
	}
}

func TestClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// setup runs before the client starts; during after it started.
		setup, during func(svc *jobstest.Service)
		before        func(svc *jobstest.Service) func(*jobs.Job)
		want          []string // final status per job j1, j2
		wantErr       error
	}{
		{name: "queued before start", setup: func(s *jobstest.Service) { s.Add("j1", map[string]string{"type": "x"}) },
			want: []string{"SUCCEEDED"}},
		{name: "notified while running", during: func(s *jobstest.Service) { s.Add("j1", map[string]string{"type": "x"}) },
			want: []string{"SUCCEEDED"}},
		{name: "two jobs one at a time", setup: func(s *jobstest.Service) {
			s.Add("j1", map[string]string{"type": "x"})
			s.Add("j2", map[string]string{"type": "x"})
		}, want: []string{"SUCCEEDED", "SUCCEEDED"}},
		{name: "duplicate notifications", setup: func(s *jobstest.Service) { s.DuplicateNotifications(true) },
			during: func(s *jobstest.Service) { s.Add("j1", map[string]string{"type": "x"}) }, want: []string{"SUCCEEDED"}},
		{name: "lost responses are retried", setup: func(s *jobstest.Service) {
			s.Add("j1", map[string]string{"type": "x"})
			s.DropResponses(2)
		}, want: []string{"SUCCEEDED"}},
		{name: "throttled", setup: func(s *jobstest.Service) {
			s.Add("j1", map[string]string{"type": "x"})
			s.Throttle(3)
		}, want: []string{"SUCCEEDED"}},
		{name: "version mismatch re-reads", setup: func(s *jobstest.Service) { s.Add("j1", map[string]string{"type": "x"}) },
			before: func(s *jobstest.Service) func(*jobs.Job) { return func(*jobs.Job) { s.BumpVersion("j1") } },
			want:   []string{"SUCCEEDED"}},
		{name: "cancelled while running", setup: func(s *jobstest.Service) { s.Add("j1", map[string]string{"type": "x"}) },
			before:  func(s *jobstest.Service) func(*jobs.Job) { return func(*jobs.Job) { s.Cancel("j1") } },
			want:    []string{"CANCELED"},
			wantErr: jobs.ErrGone},
		{name: "queued while offline, picked up on reconnect", setup: func(s *jobstest.Service) { s.SetOffline(true) },
			during: func(s *jobstest.Service) {
				s.Add("j1", map[string]string{"type": "x"}) // notify-next lost
				s.SetOffline(false)
			}, want: []string{"SUCCEEDED"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc := jobstest.New("TCU-1")
			h := &recorder{finish: jobs.StatusSucceeded, done: make(chan string, 4)}
			if tc.before != nil {
				h.before = tc.before(svc)
			}
			if tc.setup != nil {
				tc.setup(svc)
			}
			start(t, svc, h)
			if tc.during != nil {
				tc.during(svc)
			}
			var ran []string
			for range tc.want {
				ran = append(ran, wait(t, h.done))
			}
			for i, w := range tc.want {
				id := []string{"j1", "j2"}[i]
				if ran[i] != id {
					t.Errorf("ran %v, want j1 then j2", ran)
				}
				e, _ := svc.Get(id)
				if e.Status != w {
					t.Errorf("%s: status %s, want %s (updates %v)", id, e.Status, w, e.Updates)
				}
			}
			h.mu.Lock()
			if tc.wantErr != nil && !errors.Is(h.errs[0], tc.wantErr) {
				t.Errorf("handler error %v, want %v", h.errs[0], tc.wantErr)
			}
			if tc.wantErr == nil && h.errs[0] != nil {
				t.Errorf("handler error %v", h.errs[0])
			}
			h.mu.Unlock()
			if v := svc.Violations(); len(v) > 0 {
				t.Errorf("protocol violations: %v", v)
			}
			// No job runs twice (duplicates, retries).
			select {
			case id := <-h.done:
				t.Errorf("job %s ran again", id)
			case <-time.After(50 * time.Millisecond):
			}
		})
	}
}

// (start-next, the first handler's update, the resumed one's final;
// the first process never runs it twice.)
// A handler that leaves the execution IN_PROGRESS (the process restarts to
// prove a configuration) gets it again from the next client, with the
// status details it had set.
func TestClientResumesInProgress(t *testing.T) {
	t.Parallel()
	svc := jobstest.New("TCU-1")
	svc.Add("j1", map[string]string{"type": "x"})
	h1 := &recorder{done: make(chan string, 1)}
	_, stop := start(t, svc, h1)
	wait(t, h1.done)
	stop()
	got := make(chan *jobs.Job, 1)
	start(t, svc, jobs.HandlerFunc(func(ctx context.Context, j *jobs.Job) {
		c := *j
		got <- &c
		_ = j.Update(ctx, jobs.StatusFailed, map[string]string{"reason": "crash_loop"})
	}))
	var j *jobs.Job
	select {
	case j = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("in-progress job not resumed")
	}
	if j.Status != jobs.StatusInProgress || j.StatusDetails["step"] != "verifying" {
		t.Errorf("resumed %s %v, want IN_PROGRESS step=verifying", j.Status, j.StatusDetails)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, _ := svc.Get("j1")
		if e.Status == jobs.StatusFailed {
			if !slices.Equal(e.Updates, []string{"IN_PROGRESS", "IN_PROGRESS", "FAILED"}) {
				t.Errorf("updates %v", e.Updates)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %s, want FAILED", e.Status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestClientIgnoresOtherThings(t *testing.T) {
	t.Parallel()
	c, err := jobs.New(jobs.Options{Thing: "TCU-1", Publisher: jobstest.New("TCU-1"), Handler: &recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Owns("$aws/things/TCU-2/jobs/notify-next") || !c.Owns("$aws/things/TCU-1/jobs/notify-next") {
		t.Error("Owns does not check the thing name")
	}
	c.HandleMessage("$aws/things/TCU-2/jobs/notify-next", []byte(`{"execution":{"jobId":"x"}}`)) // must not panic or act
}

func TestPrintable(t *testing.T) {
	t.Parallel()
	ctrl := regexp.MustCompile(`\p{C}`)
	for _, in := range []string{"tcu-agent.toml:12: a\nb", "tab\there", "bad\xffutf8", "zero\u200bwidth", "ok é"} {
		got := jobs.Printable(in)
		if ctrl.MatchString(got) || !utf8.ValidString(got) {
			t.Errorf("Printable(%q) = %q: still has control characters", in, got)
		}
	}
	if got := jobs.Printable("a\nb"); got != "a b" {
		t.Errorf("Printable(a\\nb) = %q, want \"a b\"", got)
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{{"abc", 5, "abc"}, {"abcdef", 3, "abc"}, {"aé", 2, "a"}, {"éé", 3, "é"}} {
		if got := jobs.Truncate(tc.in, tc.n); got != tc.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// TestConnectedIsEventDriven: without Resync the client has no timer: idle,
// it reads Connects only at start; Connected (the session's connect hook)
// makes it ask for work queued while it was offline.
func TestConnectedIsEventDriven(t *testing.T) {
	t.Parallel()
	svc := jobstest.New("TCU-1")
	var reads atomic.Int64
	h := &recorder{done: make(chan string, 4), finish: jobs.StatusSucceeded}
	c, err := jobs.New(jobs.Options{Thing: "TCU-1", Publisher: svc, Handler: h,
		Connects:       func() uint64 { reads.Add(1); return svc.Connects() },
		RequestTimeout: 200 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	svc.Deliver = c.HandleMessage
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	deadline := time.Now().Add(10 * time.Second)
	for len(svc.Requests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if len(svc.Requests()) == 0 {
		t.Fatal("no $next/get at start")
	}
	time.Sleep(time.Second) // idle: no notification, no reconnect
	if n := reads.Load(); n != 1 {
		t.Errorf("idle client read Connects %d times in 1 s, want 1 (at start): it polls", n)
	}
	svc.SetOffline(true)
	svc.Add("j1", map[string]string{"type": "x"}) // its notification is lost
	svc.SetOffline(false)
	c.Connected()
	if got := wait(t, h.done); got != "j1" {
		t.Errorf("ran %q after Connected, want j1", got)
	}
}
