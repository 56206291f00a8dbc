package packaging

import (
	"errors"
	"os/exec"
	"testing"
)

// TestCANScripts runs scripts/can-setup.sh and scripts/vcan-setup.sh in
// dry-run mode (-n) and checks the ip(8) commands they would run and their
// argument validation. It needs no CAN hardware or root.
func TestCANScripts(t *testing.T) {
	t.Parallel()
	requireTool(t, "bash")
	tests := []struct {
		name     string
		script   string
		args     []string
		wantOut  string
		wantCode int
	}{
		{
			name: "can defaults", script: "can-setup.sh", args: []string{"-n"},
			wantOut: "+ ip link set dev can0 down\n" +
				"+ ip link set dev can0 type can bitrate 500000 sample-point 0.875 restart-ms 100\n" +
				"+ ip link set dev can0 txqueuelen 128\n" +
				"+ ip link set dev can0 up\n",
		},
		{
			name: "can fd listen-only", script: "can-setup.sh",
			args: []string{"-n", "-i", "can1", "-b", "250000", "-r", "0", "--fd", "-d", "2000000", "--listen-only"},
			wantOut: "+ ip link set dev can1 down\n" +
				"+ ip link set dev can1 type can bitrate 250000 sample-point 0.875 restart-ms 0 dbitrate 2000000 fd on listen-only on\n" +
				"+ ip link set dev can1 txqueuelen 128\n" +
				"+ ip link set dev can1 up\n",
		},
		{name: "can down", script: "can-setup.sh", args: []string{"-n", "--down"}, wantOut: "+ ip link set dev can0 down\n"},
		{name: "can bitrate too high", script: "can-setup.sh", args: []string{"-n", "-b", "2000000"}, wantCode: 2},
		{name: "can fd without dbitrate", script: "can-setup.sh", args: []string{"-n", "--fd"}, wantCode: 2},
		{name: "can bad iface", script: "can-setup.sh", args: []string{"-n", "-i", "can0;reboot"}, wantCode: 2},
		{name: "can unknown option", script: "can-setup.sh", args: []string{"-n", "--bitrate"}, wantCode: 2},
		{
			name: "vcan two fd", script: "vcan-setup.sh", args: []string{"-n", "--fd", "vcan0", "vcan1"},
			wantOut: "+ ip link add dev vcan0 type vcan\n+ ip link set dev vcan0 mtu 72\n+ ip link set dev vcan0 up\n" +
				"+ ip link add dev vcan1 type vcan\n+ ip link set dev vcan1 mtu 72\n+ ip link set dev vcan1 up\n",
		},
		{name: "vcan down", script: "vcan-setup.sh", args: []string{"-n", "--down"}, wantOut: "+ ip link delete dev vcan0\n"},
		{name: "vcan bad name", script: "vcan-setup.sh", args: []string{"-n", "a/b"}, wantCode: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command("bash", append([]string{"../scripts/" + tt.script}, tt.args...)...)
			out, err := cmd.Output()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d; output:\n%s", code, tt.wantCode, out)
			}
			if tt.wantCode == 0 && string(out) != tt.wantOut {
				t.Errorf("output:\n%s\nwant:\n%s", out, tt.wantOut)
			}
		})
	}
}

// TestVMScriptsParse checks that the systemd-test scripts (run only by
// `make systemd-test`, not by go test) at least parse: bash -n for the
// host's, sh -n for those busybox or the guest's dash run.
func TestVMScriptsParse(t *testing.T) {
	t.Parallel()
	requireTool(t, "bash")
	for _, s := range []struct{ shell, file string }{
		{"bash", "../scripts/systemd-test.sh"},
		{"bash", "../scripts/systemd-test/rootfs.sh"},
		{"bash", "../scripts/systemd-test/initrd.sh"},
		{"bash", "../scripts/systemd-test/qemu.sh"},
		{"bash", "../scripts/systemd-test/guest.sh"},
		{"bash", "../scripts/gen-copyright.sh"},
		{"sh", "../scripts/systemd-test/fixup.sh"},
		{"sh", "../scripts/systemd-test/init"},
		{"sh", "scripts/postinstall.sh"},
		{"sh", "scripts/preremove.sh"},
		{"sh", "scripts/postremove.sh"},
	} {
		if out, err := exec.Command(s.shell, "-n", s.file).CombinedOutput(); err != nil {
			t.Errorf("%s -n %s: %v\n%s", s.shell, s.file, err, out)
		}
	}
}
