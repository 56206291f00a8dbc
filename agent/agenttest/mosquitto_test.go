package agenttest

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// mosquitto is Debian's broker on a loopback port (plaintext, anonymous,
// TCP_NODELAY), stopped when the test ends. Tests using it skip when it is
// not installed, unless TCU_REQUIRE_MOSQUITTO=1 (scripts/ci.d).
type mosquitto struct{ addr string }

func startMosquitto(tb testing.TB) *mosquitto {
	tb.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		if os.Getenv("TCU_REQUIRE_MOSQUITTO") == "1" {
			tb.Fatal("mosquitto not installed (TCU_REQUIRE_MOSQUITTO=1)")
		}
		tb.Skip("mosquitto not installed: apt-get install mosquitto (scripts/ci.d/25-commands.sh)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	dir := tb.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nmax_queued_messages 10000\nlog_dest file %s\n",
		port, filepath.Join(dir, "mosquitto.log"))
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill() // our own child, by PID
		<-done
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
			return &mosquitto{addr: addr}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("mosquitto did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// backend is the cloud side on an external broker: it publishes requests
// at QoS 1 (returning when the broker's PUBACK arrived) and records every
// response.
type backend struct {
	tb    testing.TB
	thing string
	c     paho.Client

	mu    sync.Mutex
	resps []Response // guarded by mu
	wake  chan struct{}
}

func newBackend(tb testing.TB, addr, thing string) *backend {
	tb.Helper()
	b := &backend{tb: tb, thing: thing, wake: make(chan struct{}, 1)}
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("backend-" + strconv.Itoa(os.Getpid())).
		SetCleanSession(true).SetAutoReconnect(false).SetOrderMatters(false)
	b.c = paho.NewClient(o)
	if tok := b.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("backend connect: %v", tok.Error())
	}
	tb.Cleanup(func() { b.c.Disconnect(0) })
	tok := b.c.Subscribe(devcloud.ResponseTopic(thing, "+"), 1, func(_ paho.Client, m paho.Message) {
		r, err := devcloud.ParseResponse(m.Payload())
		if err != nil {
			tb.Errorf("bad response %s: %v", m.Payload(), err)
			return
		}
		b.mu.Lock()
		b.resps = append(b.resps, Response{Response: r, Topic: m.Topic(), At: time.Now()})
		b.mu.Unlock()
		select {
		case b.wake <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("backend subscribe: %v", tok.Error())
	}
	return b
}

// send publishes req and returns when the broker acknowledged it.
func (b *backend) send(req devcloud.Request) time.Time {
	b.tb.Helper()
	p, err := json.Marshal(req)
	if err != nil {
		b.tb.Fatal(err)
	}
	tok := b.c.Publish(devcloud.RequestTopic(b.thing, req.ID), 1, false, p)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.tb.Fatalf("publish %s: %v", req.ID, tok.Error())
	}
	return time.Now()
}

// finals returns the final responses for id.
func (b *backend) finals(id string) []Response {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Response
	for _, r := range b.resps {
		if r.ID == id && devcloud.Final(r.Status) {
			out = append(out, r)
		}
	}
	return out
}

// waitFinal waits up to timeout for a final response for id.
func (b *backend) waitFinal(id string, timeout time.Duration) (Response, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if rs := b.finals(id); len(rs) > 0 {
			return rs[0], true
		}
		select {
		case <-b.wake:
		case <-deadline.C:
			return Response{}, false
		}
	}
}

// publish publishes req without waiting for the PUBACK.
func (b *backend) publish(req devcloud.Request) paho.Token {
	b.tb.Helper()
	p, err := json.Marshal(req)
	if err != nil {
		b.tb.Fatal(err)
	}
	return b.c.Publish(devcloud.RequestTopic(b.thing, req.ID), 1, false, p)
}

// waitAll waits up to timeout until every id has a final response; it
// returns when the last one arrived and whether all did.
func (b *backend) waitAll(ids []string, timeout time.Duration) (time.Time, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		var last time.Time
		all := true
		for _, id := range ids {
			fs := b.finals(id)
			if len(fs) == 0 {
				all = false
				break
			}
			if fs[0].At.After(last) {
				last = fs[0].At
			}
		}
		if all {
			return last, true
		}
		select {
		case <-b.wake:
		case <-deadline.C:
			return time.Time{}, false
		}
	}
}
