package devcloud_test

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// BenchmarkJobsUpdateRoundTrip measures one UpdateJobExecution request
// from a paho device to its accepted reply through the broker.
func BenchmarkJobsUpdateRoundTrip(b *testing.B) {
	c, err := devcloud.New(devcloud.Options{Addr: "127.0.0.1:0", Limits: devcloud.Limits{MaxPublishRate: 1 << 30}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Jobs().Create(devcloud.JobSpec{ID: "j", Things: []string{"T1"}, Document: []byte(`{}`)}); err != nil {
		b.Fatal(err)
	}
	replies := make(chan struct{}, 1)
	o := mqtt.NewClientOptions().AddBroker("tcp://" + c.Addr()).SetClientID("T1").SetAutoReconnect(false)
	o.SetDefaultPublishHandler(func(mqtt.Client, mqtt.Message) { replies <- struct{}{} })
	cl := mqtt.NewClient(o)
	if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer cl.Disconnect(100)
	b.ResetTimer()
	for i := range b.N {
		body := fmt.Sprintf(`{"status":"IN_PROGRESS","expectedVersion":%d,"statusDetails":{"step":"applying"}}`, i+1)
		cl.Publish("$aws/things/T1/jobs/j/update", 0, false, body)
		select {
		case <-replies:
		case <-time.After(5 * time.Second):
			b.Fatal("no reply")
		}
	}
	b.StopTimer()
	if x, _ := c.Jobs().Execution("T1", "j"); x.VersionNumber != int64(b.N)+1 {
		b.Fatalf("version %d after %d updates", x.VersionNumber, b.N)
	}
}
