package command_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tcu-agent/tcu-agent/agent/command"
)

// FuzzParseCommand: the parser never panics, classifies every failure, and
// what it accepts survives a round trip unchanged.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		validReq,
		`{"id":"c","device":"d","name":"a.b","params":{"x":[1,{"y":null}]},"issued_at":1,"valid_ms":2,"sig":"AA=="}`,
		`{"id":"c","id":"d"}`,
		`{"id":"c","device":"d","name":"a.b","issued_at":1e3,"valid_ms":2}`,
		`{"name":"door.lock","issued_at":1790000000000,"valid_ms":30000}`,
		`{"id":"\u0000","device":"d"}`,
		`{} {}`,
		`nul`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := command.ParseRequest(b, 4096)
		if err != nil {
			if !errors.Is(err, command.ErrMalformed) && !errors.Is(err, command.ErrTooLarge) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if r.ID == "" || r.Device == "" || r.Name == "" || r.IssuedAt <= 0 || r.ValidMS <= 0 || !json.Valid(r.Params) {
			t.Fatalf("accepted an incomplete request %+v", r)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
		again, err := command.ParseRequest(buf.Bytes(), 1<<20)
		if err != nil {
			t.Fatalf("re-parse of %+v: %v", r, err)
		}
		if diff := cmp.Diff(r, again); diff != "" {
			t.Fatalf("round trip mismatch (-first +second):\n%s", diff)
		}
		if lines := bytes.Count(command.SigningBytes(r), []byte("\n")); lines != 6 {
			t.Fatalf("canonical form has %d newlines, want 6", lines)
		}
	})
}

// FuzzVerifySignature: verification of arbitrary signed input never panics
// and never accepts a request whose signature was not made by the key over
// exactly its canonical form.
func FuzzVerifySignature(f *testing.F) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	pub := []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}
	signed, _ := command.ParseRequest([]byte(validReq), 4096)
	command.Sign(&signed, key)
	f.Add([]byte(validReq), signed.Sig)
	f.Add([]byte(validReq), "")
	f.Add([]byte(validReq), "!!!")
	f.Add([]byte(`{"id":"c-1","device":"TCU-00042","name":"door.lock","params":{},"issued_at":1790000000000,"valid_ms":30001}`), signed.Sig)
	f.Fuzz(func(t *testing.T, b []byte, sig string) {
		r, err := command.ParseRequest(b, 4096)
		if err != nil {
			return
		}
		r.Sig = sig
		err = command.VerifySignature(r, pub)
		if err != nil {
			if !errors.Is(err, command.ErrSignature) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if !bytes.Equal(command.SigningBytes(r), command.SigningBytes(signed)) {
			t.Fatalf("accepted a signature over a different canonical form: %+v", r)
		}
	})
}
