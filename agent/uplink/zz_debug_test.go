package uplink_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/uplink"
	"github.com/tcu-agent/tcu-agent/agent/uplink/uplinktest"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

type lockedBuf struct{ mu sync.Mutex; b bytes.Buffer }
func (l *lockedBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }

func TestDebugQueued(t *testing.T) {
	var lb lockedBuf
	cloud, _ := devcloud.New(devcloud.Options{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(&lb, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	_ = lb.Write
	cloud.Start(context.Background())
	defer cloud.Close()
	var in inbox
	dbg := slog.New(slog.NewTextHandler(&lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, _ := uplink.New(uplink.Options{Config: fastConfig(cloud.Addr()), Thing: "TCU-C", Queue: uplinktest.NewQueue(),
		Subscriptions: []string{"cmd/tcu/TCU-C/request/+"}, Handler: in.handle, Logger: dbg})
	runSession(t, s)
	eventually(t, 10*time.Second, "connected", s.Connected)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cloud.SendCommand(ctx, "TCU-C", "door.lock", nil)
	eventually(t, 10*time.Second, "first command", func() bool { return in.count() == 1 })
	cloud.Faults().RefuseConnects(true)
	cloud.Faults().DropConnections()
	eventually(t, 10*time.Second, "offline", func() bool { return !s.Connected() })
	lb.Write([]byte("----- sending while offline\n"))
	cloud.SendCommand(ctx, "TCU-C", "door.unlock", nil)
	cloud.Faults().RefuseConnects(false)
	deadline := time.Now().Add(6 * time.Second)
	for in.count() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if in.count() < 2 {
		lb.mu.Lock()
		t.Errorf("lost; stats %+v\n%s", s.Stats(), lb.b.String())
		lb.mu.Unlock()
	}
}
