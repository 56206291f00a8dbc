package uplink

import (
	"bytes"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// connectPacket is the CONNECT paho writes, as one buffer.
func connectPacket(t testing.TB, ka uint16, id string, will bool) []byte {
	t.Helper()
	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion, cp.Keepalive, cp.ClientIdentifier = "MQTT", 4, ka, id
	if will {
		cp.WillFlag, cp.WillQos, cp.WillRetain = true, 1, true
		cp.WillTopic, cp.WillMessage = "dt/tcu/"+id+"/status", bytes.Repeat([]byte("x"), 300)
	}
	var b bytes.Buffer
	if err := cp.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestSetConnectKeepAlive: the keep-alive field of paho's CONNECT (sent
// with 0) is set, whatever the remaining-length size; anything else is
// left alone.
func TestSetConnectKeepAlive(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		ka   uint16
		want []byte
	}{
		{"short connect", connectPacket(t, 0, "TCU-1", false), 1200, connectPacket(t, 1200, "TCU-1", false)},
		{"two-byte remaining length", connectPacket(t, 0, "TCU-1", true), 60, connectPacket(t, 60, "TCU-1", true)},
		{"keep-alive already set", connectPacket(t, 30, "TCU-1", false), 1200, connectPacket(t, 30, "TCU-1", false)},
		{"not a connect", []byte{0xc0, 0x00}, 60, []byte{0xc0, 0x00}},
		{"truncated", connectPacket(t, 0, "TCU-1", false)[:9], 60, connectPacket(t, 0, "TCU-1", false)[:9]},
		{"empty", nil, 60, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := bytes.Clone(tc.in)
			got := setConnectKeepAlive(in, tc.ka)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("got % x\nwant % x", got, tc.want)
			}
			if !bytes.Equal(in, tc.in) {
				t.Error("the input was modified")
			}
			if tc.ka == 1200 && tc.name == "short connect" { // paho reads it back
				p, err := packets.ReadPacket(bytes.NewReader(got))
				if err != nil {
					t.Fatal(err)
				}
				if ka := p.(*packets.ConnectPacket).Keepalive; ka != 1200 {
					t.Errorf("decoded keep-alive %d, want 1200", ka)
				}
			}
		})
	}
}

// FuzzSetConnectKeepAlive: any bytes: no panic, the same length, and
// at most the two keep-alive bytes changed.
func FuzzSetConnectKeepAlive(f *testing.F) {
	f.Add(connectPacket(f, 0, "TCU-1", false), uint16(60))
	f.Add(connectPacket(f, 0, "TCU-1", true), uint16(1200))
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x00}, uint16(1))
	f.Fuzz(func(t *testing.T, p []byte, ka uint16) {
		got := setConnectKeepAlive(p, ka)
		if len(got) != len(p) {
			t.Fatalf("length %d → %d", len(p), len(got))
		}
		diff := 0
		for i := range p {
			if p[i] != got[i] {
				diff++
			}
		}
		if diff > 2 {
			t.Fatalf("%d bytes changed", diff)
		}
	})
}
