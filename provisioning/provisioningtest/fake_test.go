package provisioningtest_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tcu-agent/tcu-agent/provisioning"
	"github.com/tcu-agent/tcu-agent/provisioning/provisioningtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func claim(t *testing.T) tls.Certificate {
	t.Helper()
	cert, key, err := provisioningtest.WriteClaim(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// TestFakeFlagsPublishBeforeSubscribe proves the fake notices a device
// that publishes a request before subscribing to its answers (the
// provisioning tests rely on Violations being empty).
func TestFakeFlagsPublishBeforeSubscribe(t *testing.T) {
	t.Parallel()
	f, err := provisioningtest.New(provisioningtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := f.Dial(context.Background(), claim(t), "dev")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Publish(context.Background(), "$aws/certificates/create/json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if v := f.Violations(); len(v) != 1 {
		t.Errorf("violations %v, want one", v)
	}
}

// TestFakeAnswersCreateKeys checks the accepted payload carries AWS's
// field names and a token RegisterThing accepts.
func TestFakeAnswersCreateKeys(t *testing.T) {
	t.Parallel()
	f, err := provisioningtest.New(provisioningtest.Options{ThingPrefix: "x-"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := f.Dial(context.Background(), claim(t), "dev")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := make(chan []byte, 4)
	sub := func(topic string) {
		if err := conn.Subscribe(context.Background(), topic, func(_ string, p []byte) { got <- p }); err != nil {
			t.Fatal(err)
		}
	}
	sub("$aws/certificates/create/json/accepted")
	sub("$aws/certificates/create/json/rejected")
	if err := conn.Publish(context.Background(), "$aws/certificates/create/json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	var acc map[string]string
	if err := json.Unmarshal(wait(t, got), &acc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"certificateId", "certificatePem", "privateKey", "certificateOwnershipToken"} {
		if acc[k] == "" {
			t.Errorf("accepted payload lacks %s", k)
		}
	}
	reg := "$aws/provisioning-templates/TelematicsFleetV1/provision/json"
	sub(reg + "/accepted")
	sub(reg + "/rejected")
	body, _ := json.Marshal(map[string]any{"certificateOwnershipToken": acc["certificateOwnershipToken"], "parameters": map[string]string{"SerialNumber": "7"}})
	if err := conn.Publish(context.Background(), reg, body); err != nil {
		t.Fatal(err)
	}
	var r struct{ ThingName string }
	if err := json.Unmarshal(wait(t, got), &r); err != nil || r.ThingName != "x-7" {
		t.Errorf("register answer %+v, %v", r, err)
	}
}

func TestFakeRevokedClaim(t *testing.T) {
	t.Parallel()
	f, err := provisioningtest.New(provisioningtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.Set(provisioningtest.Knobs{RevokedClaim: true})
	if _, err := f.Dial(context.Background(), claim(t), "dev"); !errors.Is(err, provisioning.ErrUnauthorized) {
		t.Errorf("Dial = %v, want ErrUnauthorized", err)
	}
}

func wait(t *testing.T, ch <-chan []byte) []byte {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
		return nil
	}
}
