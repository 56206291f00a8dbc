package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeDevice answers every command request with IN_PROGRESS, then final.
func fakeDevice(t *testing.T, addr, thing, final string) {
	t.Helper()
	cfg := uplink.DefaultConfig()
	cfg.Broker, cfg.AllowPlaintext = "tcp://"+addr, true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	dev, err := uplink.DialConn(ctx, cfg, tls.Certificate{}, thing, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	err = dev.Subscribe(ctx, "cmd/tcu/"+thing+"/request/+", func(_ string, b []byte) {
		var req devcloud.Request
		if json.Unmarshal(b, &req) != nil {
			return
		}
		go func() { // ends after two publishes or with ctx
			for _, st := range []string{devcloud.StatusInProgress, final} {
				resp, _ := json.Marshal(devcloud.Response{ID: req.ID, Device: thing, Status: st, ReasonCode: strings.ToLower(st)})
				_ = dev.Publish(ctx, devcloud.ResponseTopic(thing, req.ID), resp)
			}
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSendVerb(t *testing.T) {
	cloud, err := devcloud.New(devcloud.Options{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := cloud.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	fakeDevice(t, cloud.Addr(), "TCU-OK", devcloud.StatusSucceeded)
	fakeDevice(t, cloud.Addr(), "TCU-NO", devcloud.StatusRejected)
	line := regexp.MustCompile(`^door\.lock [0-9a-f-]{36}: (IN_PROGRESS|SUCCEEDED|REJECTED) \([a-z_]+\) in \d+ms$`)
	tests := []struct {
		thing    string
		wantCode int
		wantLast string
	}{
		{"TCU-OK", 0, "SUCCEEDED"},
		{"TCU-NO", 1, "REJECTED"},
		{"TCU-NOBODY", 1, "no final response"},
	}
	for _, tt := range tests {
		t.Run(tt.thing, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), []string{"send", "--addr", cloud.Addr(), "--thing", tt.thing, "--name", "door.lock", "--timeout", "2s"}, nil, &out, &errOut)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stdout %q stderr %q", code, tt.wantCode, out.String(), errOut.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if last := lines[len(lines)-1]; !strings.Contains(last, tt.wantLast) {
				t.Errorf("last line %q, want %q", last, tt.wantLast)
			}
			if tt.wantCode == 0 || tt.thing == "TCU-NO" {
				for _, l := range lines {
					if !line.MatchString(l) {
						t.Errorf("line %q does not match %v", l, line)
					}
				}
			}
		})
	}
}

func TestUnknownVerb(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"bogus"}, nil, &out, &errOut); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
}
