package command_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcu-agent/tcu-agent/agent/command"
)

// TestAdmissionOverflow: extreme integers, floats and huge numbers in the
// time fields are refused with the right reason and never actuate (issue 13
// item 1: valid_ms = 2^58+30000 used to wrap to a short window).
func TestAdmissionOverflow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	now := h.clock.Now().UnixMilli()
	nowS := strconv.FormatInt(now, 10)
	tests := []struct {
		name, issued, valid string
		wantCode            string
	}{
		{"valid_ms 2^58+30000", nowS, "288230376151741456", command.ReasonValidityTooLong},
		{"valid_ms 2^62", nowS, "4611686018427387904", command.ReasonValidityTooLong},
		{"valid_ms int64 max", nowS, "9223372036854775807", command.ReasonValidityTooLong},
		{"valid_ms int64 max+1", nowS, "9223372036854775808", command.ReasonMalformed},
		{"valid_ms 2^64+30000", nowS, "18446744073709581616", command.ReasonMalformed},
		{"valid_ms negative", nowS, "-30000", command.ReasonMalformed},
		{"valid_ms int64 min", nowS, "-9223372036854775808", command.ReasonMalformed},
		{"valid_ms zero", nowS, "0", command.ReasonMalformed},
		{"valid_ms float", nowS, "30000.5", command.ReasonMalformed},
		{"valid_ms exponent", nowS, "3e4", command.ReasonMalformed},
		{"valid_ms huge literal", nowS, strings.Repeat("9", 3900), command.ReasonMalformed},
		{"valid_ms string", nowS, `"30000"`, command.ReasonMalformed},
		{"valid_ms max_validity+1ms", nowS, strconv.FormatInt(int64(10*time.Minute/time.Millisecond)+1, 10), command.ReasonValidityTooLong},
		{"issued_at int64 max", "9223372036854775807", "30000", command.ReasonFuture},
		{"issued_at int64 max, valid_ms max_validity", "9223372036854775807", "600000", command.ReasonFuture},
		{"issued_at 1", "1", "600000", command.ReasonExpired},
		{"issued_at negative", "-1", "30000", command.ReasonMalformed},
		{"issued_at float", nowS + ".0", "30000", command.ReasonMalformed},
		{"issued_at 2^63 wraps", "9223372036854775808", "30000", command.ReasonMalformed},
		{"issued_at past, valid long", strconv.FormatInt(now-600_001, 10), "600000", command.ReasonExpired},
	}
	for i, tt := range tests {
		id := idN("ovf", i)
		p := `{"id":"` + id + `","device":"` + thing + `","name":"door.lock","params":{},"issued_at":` + tt.issued + `,"valid_ms":` + tt.valid + `}`
		h.sendRaw(requestTopic(id), []byte(p))
		r := h.final(id, 1)
		if r.ReasonCode != tt.wantCode || r.Status != command.StatusRejected {
			t.Errorf("%s: %s/%s (%s), want REJECTED/%s", tt.name, r.Status, r.ReasonCode, r.Reason, tt.wantCode)
		}
	}
	if n := h.tx.Count(); n != 0 {
		t.Fatalf("%d frames sent for refused requests", n)
	}
	// The boundary itself is admitted.
	id := "ovf-ok"
	p := `{"id":"` + id + `","device":"` + thing + `","name":"door.lock","params":{},"issued_at":` + nowS + `,"valid_ms":600000}`
	h.sendRaw(requestTopic(id), []byte(p))
	if r := h.final(id, 1); r.Status != command.StatusSucceeded {
		t.Fatalf("valid_ms = max_validity: %s/%s (%s)", r.Status, r.ReasonCode, r.Reason)
	}
}

// admissionCase is one generated request and the clock it is judged at.
type admissionCase struct {
	payload []byte
	topicID string
	nowNS   *big.Int
	trusted bool
}

// admissible recomputes every admission rule of docs/commands.md from the
// raw payload with arbitrary-precision arithmetic, independently of the
// engine's parser and checks. It returns "" when a frame is allowed, else
// the rule that forbids one.
func admissible(c admissionCase, cfg command.Config) string {
	if len(c.payload) > cfg.MaxRequestBytes {
		return "size"
	}
	if cfg.RequireTrustedClock && !c.trusted {
		return "clock"
	}
	dec := json.NewDecoder(bytes.NewReader(c.payload))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "object"
	}
	fields := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "key"
		}
		k, _ := tok.(string)
		if _, dup := fields[k]; dup {
			return "duplicate"
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return "value"
		}
		fields[k] = raw
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return "unterminated"
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "trailing"
	}
	for k := range fields {
		switch k {
		case "id", "device", "name", "params", "issued_at", "valid_ms", "sig":
		default:
			return "unknown field"
		}
	}
	str := func(k string) (string, bool) {
		raw, ok := fields[k]
		if !ok || len(raw) == 0 || raw[0] != '"' {
			return "", false
		}
		var s string
		return s, json.Unmarshal(raw, &s) == nil
	}
	if id, ok := str("id"); !ok || id != c.topicID {
		return "id"
	}
	if d, ok := str("device"); !ok || d != thing {
		return "device"
	}
	name, ok := str("name")
	if !ok || (name != "door.lock" && name != "door.unlock" && name != "ignition.enable" && name != "ignition.disable") {
		return "name"
	}
	if raw, ok := fields["params"]; ok {
		var m map[string]json.RawMessage
		if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &m) != nil || len(m) != 0 {
			return "params"
		}
	}
	if raw, ok := fields["sig"]; ok && (len(raw) == 0 || raw[0] != '"') {
		return "sig"
	}
	integer := func(k string) (*big.Int, bool) {
		raw := string(fields[k])
		if raw == "" || strings.ContainsAny(raw, ".eE\"") {
			return nil, false
		}
		n, ok := new(big.Int).SetString(raw, 10)
		if !ok || n.Sign() <= 0 || n.Cmp(big.NewInt(math.MaxInt64)) > 0 {
			return nil, false
		}
		return n, true
	}
	issued, ok1 := integer("issued_at")
	valid, ok2 := integer("valid_ms")
	if !ok1 || !ok2 {
		return "integers"
	}
	ms := big.NewInt(int64(time.Millisecond))
	validNS := new(big.Int).Mul(valid, ms)
	if validNS.Cmp(big.NewInt(int64(cfg.MaxValidity))) > 0 {
		return "validity_too_long"
	}
	issuedNS := new(big.Int).Mul(issued, ms)
	if new(big.Int).Sub(issuedNS, c.nowNS).Cmp(big.NewInt(int64(cfg.ClockSkew))) > 0 {
		return "issued_in_future"
	}
	if c.nowNS.Cmp(new(big.Int).Add(issuedNS, validNS)) > 0 {
		return "expired"
	}
	return ""
}

// fuzzSeq numbers the generated requests (one engine per fuzzing process:
// an engine per input would spend the time opening ledgers).
var fuzzSeq atomic.Int64

// FuzzAdmission generates arbitrary requests (every field, extreme
// integers, floats, huge literals, strings) and asserts: a frame was sent
// ⇒ every admission rule held, recomputed independently (admissible).
// Every request must get a final response.
func FuzzAdmission(f *testing.F) {
	h := newHarness(f, func(c *command.Config) {
		c.LedgerRetention = 0
		c.Commands[3].ArmTimeout = dur(200 * time.Millisecond) // an armed input waits in real time
	})
	f.Add(uint8(0), "", uint8(0), "", uint8(0), "", uint8(1), "", uint8(0), int64(0), "", uint8(0), int64(30_000), "", true)
	f.Add(uint8(0), "", uint8(0), "", uint8(0), "", uint8(1), "", uint8(0), int64(0), "", uint8(0), int64(288230376151741456), "", true)
	f.Add(uint8(0), "", uint8(0), "", uint8(0), "", uint8(1), "", uint8(1), int64(0), "9223372036854775807", uint8(1), int64(0), "1", true)
	f.Add(uint8(0), "", uint8(0), "", uint8(1), "", uint8(1), "", uint8(0), int64(-600_000), "", uint8(0), int64(600_000), "", true)
	f.Add(uint8(0), "", uint8(0), "", uint8(2), "", uint8(0), "", uint8(0), int64(5_000), "", uint8(1), int64(0), "30000.0", false)
	f.Add(uint8(2), "x", uint8(1), "TCU-1", uint8(3), "door.lock", uint8(2), `{"a":1}`, uint8(1), int64(0), "1e3", uint8(0), int64(-1), "", true)
	f.Add(uint8(0), "", uint8(0), "", uint8(0), "", uint8(0), "", uint8(0), int64(1<<62), "", uint8(0), int64(1<<62), "", true)
	f.Fuzz(func(t *testing.T, idMode uint8, idS string, devMode uint8, devS string, nameMode uint8, nameS string,
		paramMode uint8, paramS string, issuedMode uint8, issuedOff int64, issuedRaw string,
		validMode uint8, validMS int64, validRaw string, trusted bool) {
		h.t = t
		defer func() { h.t = f }()
		// Every earlier entry has expired: the ledger never fills up.
		h.clock.Advance(h.cfg.MaxValidity.Std() + h.cfg.ClockSkew.Std() + time.Second)
		now := h.clock.Now().UnixMilli() + 5_000 // after parked()
		topicID := idN("fz", int(fuzzSeq.Add(1)))
		var b strings.Builder
		b.WriteString("{")
		field := func(k, raw string) {
			if b.Len() > 1 {
				b.WriteString(",")
			}
			b.WriteString(strconv.Quote(k) + ":" + raw)
		}
		switch idMode % 4 {
		case 0:
			field("id", strconv.Quote(topicID))
		case 1:
			field("id", strconv.Quote(idS))
		case 2:
			field("id", idS)
		}
		switch devMode % 4 {
		case 0:
			field("device", strconv.Quote(thing))
		case 1:
			field("device", strconv.Quote(devS))
		case 2:
			field("device", devS)
		}
		names := []string{"door.lock", "door.unlock", "ignition.enable", "ignition.disable"}
		switch nm := int(nameMode % 7); {
		case nm < 4:
			field("name", strconv.Quote(names[nm]))
		case nm == 4:
			field("name", strconv.Quote(nameS))
		case nm == 5:
			field("name", nameS)
		}
		switch paramMode % 3 {
		case 1:
			field("params", "{}")
		case 2:
			field("params", paramS)
		}
		issued := func() string {
			switch issuedMode % 4 {
			case 0:
				return strconv.FormatInt(now+issuedOff, 10) // may wrap: still just an integer
			case 1:
				return issuedRaw
			case 2:
				return strconv.FormatInt(issuedOff, 10)
			}
			return ""
		}()
		if issuedMode%4 != 3 {
			field("issued_at", issued)
		}
		valid := func() string {
			switch validMode % 4 {
			case 0:
				return strconv.FormatInt(validMS, 10)
			case 1:
				return validRaw
			case 2:
				return strconv.FormatFloat(float64(validMS)/7, 'f', -1, 64)
			}
			return ""
		}()
		if validMode%4 != 3 {
			field("valid_ms", valid)
		}
		b.WriteString("}")
		payload := []byte(b.String())

		h.trusted.Store(trusted)
		h.parked() // interlock inputs fresh and held; the clock moves 5 s
		h.emit(sigLocked, 0)
		h.emit(sigImmo, 0)
		c := admissionCase{payload: payload, topicID: topicID, nowNS: big.NewInt(h.clock.Now().UnixNano()), trusted: trusted}
		before := h.tx.Count()
		h.sendRaw(requestTopic(topicID), payload)
		r := h.final(topicID, 1)
		if sent := h.tx.Count() - before; sent > 0 {
			if rule := admissible(c, h.cfg); rule != "" {
				t.Fatalf("%d frames sent for %s (answer %s/%s %q) although rule %q does not hold", sent, payload, r.Status, r.ReasonCode, r.Reason, rule)
			}
		}
	})
}
