package command_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tcu-agent/tcu-agent/agent/command"
)

const validReq = `{"id":"c-1","device":"TCU-00042","name":"door.lock","params":{},"issued_at":1790000000000,"valid_ms":30000}`

func TestParseRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    command.Request
		wantErr error
	}{
		{name: "valid", in: validReq, want: command.Request{ID: "c-1", Device: "TCU-00042", Name: "door.lock",
			Params: json.RawMessage("{}"), IssuedAt: 1790000000000, ValidMS: 30000}},
		{name: "params absent and whitespace", in: " {\"id\":\"c-1\" ,\"device\":\"d\",\"name\":\"door.lock\",\"issued_at\":1,\"valid_ms\":2}\n",
			want: command.Request{ID: "c-1", Device: "d", Name: "door.lock", Params: json.RawMessage("{}"), IssuedAt: 1, ValidMS: 2}},
		{name: "params compacted", in: `{"id":"c","device":"d","name":"a.b","params":{ "x" : [1, 2] },"issued_at":1,"valid_ms":2,"sig":"AA=="}`,
			want: command.Request{ID: "c", Device: "d", Name: "a.b", Params: json.RawMessage(`{"x":[1,2]}`), IssuedAt: 1, ValidMS: 2, Sig: "AA=="}},
		{name: "unknown field", in: strings.Replace(validReq, `"params"`, `"force":1,"params"`, 1), wantErr: command.ErrMalformed},
		{name: "duplicate field", in: strings.Replace(validReq, `"params":{}`, `"name":"door.unlock"`, 1), wantErr: command.ErrMalformed},
		{name: "missing id", in: strings.Replace(validReq, `"id":"c-1",`, ``, 1), wantErr: command.ErrMalformed},
		{name: "null name", in: strings.Replace(validReq, `"door.lock"`, `null`, 1), wantErr: command.ErrMalformed},
		{name: "numeric id", in: strings.Replace(validReq, `"c-1"`, `7`, 1), wantErr: command.ErrMalformed},
		{name: "id with slash", in: strings.Replace(validReq, `"c-1"`, `"a/b"`, 1), wantErr: command.ErrMalformed},
		{name: "name with newline", in: strings.Replace(validReq, `door.lock`, `door\nlock`, 1), wantErr: command.ErrMalformed},
		{name: "float issued_at", in: strings.Replace(validReq, `1790000000000`, `1790000000000.5`, 1), wantErr: command.ErrMalformed},
		{name: "string valid_ms", in: strings.Replace(validReq, `30000`, `"30000"`, 1), wantErr: command.ErrMalformed},
		{name: "zero valid_ms", in: strings.Replace(validReq, `30000`, `0`, 1), wantErr: command.ErrMalformed},
		{name: "negative issued_at", in: strings.Replace(validReq, `1790000000000`, `-1`, 1), wantErr: command.ErrMalformed},
		{name: "params array", in: strings.Replace(validReq, `"params":{}`, `"params":[]`, 1), wantErr: command.ErrMalformed},
		{name: "trailing data", in: validReq + `{}`, wantErr: command.ErrMalformed},
		{name: "array", in: `[` + validReq + `]`, wantErr: command.ErrMalformed},
		{name: "empty", in: ``, wantErr: command.ErrMalformed},
		{name: "too large", in: validReq + strings.Repeat(" ", 4096), wantErr: command.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := command.ParseRequest([]byte(tt.in), 4096)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseRequest() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseRequest() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSigningBytesGolden pins the canonical form: changing it breaks every
// backend that signs commands.
func TestSigningBytesGolden(t *testing.T) {
	t.Parallel()
	r := command.Request{ID: "c-1", Device: "TCU-00042", Name: "door.lock", Params: json.RawMessage(`{"a":1}`),
		IssuedAt: 1790000000000, ValidMS: 30000, Sig: "ignored"}
	want := "tcu-agent command v1\nc-1\nTCU-00042\ndoor.lock\n1790000000000\n30000\n{\"a\":1}"
	if got := string(command.SigningBytes(r)); got != want {
		t.Errorf("SigningBytes() = %q, want %q", got, want)
	}
	r.Params = nil
	if got := string(command.SigningBytes(r)); !strings.HasSuffix(got, "\n{}") {
		t.Errorf("SigningBytes() without params = %q, want a {} last line", got)
	}
}

// TestSignatureFixedVector verifies a signature made with a fixed seed, so a
// backend implementation can be checked against it (docs/commands.md).
func TestSignatureFixedVector(t *testing.T) {
	t.Parallel()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	r, err := command.ParseRequest([]byte(validReq), 4096)
	if err != nil {
		t.Fatal(err)
	}
	command.Sign(&r, key)
	const (
		wantPub = "6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw="
		wantSig = "hIkQ7Xke/ibmP3I1dIRQRHPowDAMh3kcb5Jc7llItTiOD1azTOo7SbNcVuqQHInWBmgNQsMvJuYYRf97+MkYCQ=="
	)
	pub := key.Public().(ed25519.PublicKey)
	if got := base64.StdEncoding.EncodeToString(pub); got != wantPub || r.Sig != wantSig {
		t.Errorf("key %s sig %s, want key %s sig %s", got, r.Sig, wantPub, wantSig)
	}
	if err := command.VerifySignature(r, []ed25519.PublicKey{pub}); err != nil {
		t.Fatalf("VerifySignature() = %v", err)
	}
	for _, mutate := range []func(*command.Request){
		func(r *command.Request) { r.ID = "c-2" },
		func(r *command.Request) { r.Device = "TCU-00043" },
		func(r *command.Request) { r.Name = "door.unlock" },
		func(r *command.Request) { r.IssuedAt++ },
		func(r *command.Request) { r.ValidMS++ },
		func(r *command.Request) { r.Params = json.RawMessage(`{"x":1}`) },
	} {
		m := r
		mutate(&m)
		if err := command.VerifySignature(m, []ed25519.PublicKey{pub}); !errors.Is(err, command.ErrSignature) {
			t.Errorf("VerifySignature(mutated %+v) = %v, want ErrSignature", m, err)
		}
	}
}
