package dbc

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// realFiles lists the copies of real opendbc files in the repository.
func realFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob("../../testdata/dbc/opendbc/*.dbc")
	if err != nil || len(files) == 0 {
		t.Fatalf("no real DBC files in ../../testdata/dbc/opendbc: %v", err)
	}
	return files
}

func warnStrings(ws []Warning) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.String()
	}
	return out
}

// TestParseTolerance feeds constructs found in real files and checks what
// is kept and which warning (with line) is reported.
func TestParseTolerance(t *testing.T) {
	t.Parallel()
	const good = "BO_ 1 OK: 8 X\n SG_ S : 0|8@1+ (1,0) [0|255] \"\" X\n"
	tests := []struct {
		name  string
		src   string
		warns []string // substrings, in order, each "line: text"
		check func(t *testing.T, db *Database)
	}{
		{
			name:  "29-bit ID without extended flag",
			src:   "BO_ 103596083 BSM: 8 X\n SG_ S : 0|8@1+ (1,0) [0|255] \"\" X\n",
			warns: []string{"1: BO_ ID 103596083 exceeds 11 bits without the extended flag"},
			check: func(t *testing.T, db *Database) {
				if _, ok := db.MessageByID(103596083, true); !ok {
					t.Error("message not found as extended")
				}
			},
		},
		{
			name:  "flag bits in VAL_ and CM_ IDs",
			src:   good + "VAL_ 2147483649 S 1 \"one\" ;\nCM_ BO_ 1073741825 \"c\";\n",
			warns: []string{"3: VAL_: message ID 2147483649 matched OK", "4: CM_ BO_: message ID 1073741825 matched OK"},
			check: func(t *testing.T, db *Database) {
				m, s, _ := db.Signal("OK.S")
				if s.Values[1] != "one" || m.Comment != "c" {
					t.Errorf("values %v comment %q", s.Values, m.Comment)
				}
			},
		},
		{
			name:  "missing semicolon before next statement",
			src:   "CM_ \"Front target\"\n" + good + "VAL_ 1 S 1 \"a\"\nVAL_ 1 S 2 \"b\";\n",
			warns: []string{"1: CM_: missing ';' (kept)", "4: VAL_: missing ';' (kept)"},
			check: func(t *testing.T, db *Database) {
				if db.Comment != "Front target" {
					t.Errorf("comment %q", db.Comment)
				}
			},
		},
		{
			name: "names starting with digits and escaped quotes",
			src:  "BO_ 1275 2017_5: 8 XXX\n SG_ 0_COUNTER : 35|4@0+ (1,0) [0|255] \"\" XXX\nCM_ SG_ 1275 0_COUNTER \"a \\\"b\\\" c\";\n",
			check: func(t *testing.T, db *Database) {
				_, s, err := db.Signal("2017_5.0_COUNTER")
				if err != nil || s.Comment != `a "b" c` {
					t.Errorf("Signal = %+v, %v", s, err)
				}
			},
		},
		{
			name:  "unknown keyword and garbage line",
			src:   "FOO_ 1 2 3;\n" + good + " SG_ BAD : x|8@1+ (1,0) [0|1] \"\" X\n SG_ T : 8|8@1+ (1,0) [0|255] \"\" X\n@@\n",
			warns: []string{"1: skipped unknown keyword \"FOO_\"", "4: skipped SG_: syntax error", "6: skipped unexpected \"@\""},
			check: func(t *testing.T, db *Database) {
				if m, _ := db.Message("OK"); len(m.Signals) != 2 {
					t.Errorf("signals %d, want 2", len(m.Signals))
				}
			},
		},
		{
			name:  "signal outside message length",
			src:   good + " SG_ BIG : 60|8@1+ (1,0) [0|255] \"\" X\n",
			warns: []string{"3: skipped signal OK.BIG: bits 60|8 need 9 bytes, message has 8"},
		},
		{
			name:  "message longer than 64 bytes drops its signals",
			src:   "BO_ 2 HUGE: 65 X\n SG_ S : 0|8@1+ (1,0) [0|255] \"\" X\n" + good,
			warns: []string{"1: skipped BO_: message HUGE: length 65 outside 0..64", "2: skipped SG_: its message was skipped"},
		},
		{
			name:  "duplicate message",
			src:   good + "BO_ 1 OTHER: 8 X\n",
			warns: []string{"3: skipped BO_: message OTHER: duplicate ID 0x1 (already used by OK)"},
		},
		{
			name:  "multiplexed signal without multiplexer",
			src:   good + " SG_ M3 m3 : 8|8@1+ (1,0) [0|255] \"\" X\n",
			warns: []string{"3: skipped signal OK.M3: multiplexed (m3) but the message has no multiplexer"},
		},
		{
			name:  "unterminated string",
			src:   good + "CM_ BO_ 1 \"oops;\nBO_ 2 TWO: 8 X\n",
			warns: []string{"3: skipped CM_: syntax error: want string, found unterminated string"},
			check: func(t *testing.T, db *Database) {
				if _, ok := db.Message("TWO"); !ok {
					t.Error("message after unterminated string lost")
				}
			},
		},
		{
			name:  "references to unknown messages and signals",
			src:   good + "VAL_ 9 S 1 \"a\";\nCM_ SG_ 1 Nope \"x\";\n",
			warns: []string{"3: skipped VAL_: no message with ID 9", "4: skipped CM_ SG_: message OK has no signal \"Nope\""},
		},
		{
			name: "node list over several lines, BOM, CRLF, Latin-1 unit",
			src:  "\uFEFFBU_:\r\n\tA\r\n\tB\r\n" + "BO_ 1 OK: 8 A\r\n SG_ T : 0|8@1+ (1,0) [0|255] \"\xb0C\" B\r\n",
			check: func(t *testing.T, db *Database) {
				_, s, _ := db.Signal("OK.T")
				if !cmp.Equal(db.Nodes, []string{"A", "B"}) || s.Unit != "°C" {
					t.Errorf("nodes %v unit %q", db.Nodes, s.Unit)
				}
			},
		},
		{
			name: "CAN FD from VFrameFormat, its default and length",
			src: "BA_DEF_DEF_ \"VFrameFormat\" \"StandardCAN\";\n" + good + "BO_ 2 FDIDX: 8 X\nBO_ 3 FDNAME: 8 X\nBO_ 4 LONG: 12 X\n" +
				"BA_ \"VFrameFormat\" BO_ 2 14;\nBA_ \"VFrameFormat\" BO_ 3 \"ExtendedCAN_FD\";\n",
			check: func(t *testing.T, db *Database) {
				got := map[string]bool{}
				for _, m := range db.Messages {
					got[m.Name] = m.FD
				}
				want := map[string]bool{"OK": false, "FDIDX": true, "FDNAME": true, "LONG": true}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("FD (-want +got):\n%s", diff)
				}
			},
		},
		{
			name:  "signal before any message",
			src:   " SG_ LOST : 0|8@1+ (1,0) [0|255] \"\" X\n" + good,
			warns: []string{"1: skipped SG_: not inside a message (no BO_ before it)"},
		},
		{
			name: "two plain multiplexers without SG_MUL_VAL_",
			src: good + " SG_ M1 M : 8|4@1+ (1,0) [0|15] \"\" X\n SG_ M2 M : 12|4@1+ (1,0) [0|15] \"\" X\n" +
				" SG_ V m1 : 16|8@1+ (1,0) [0|255] \"\" X\n",
			warns: []string{"1: message OK has 2 multiplexers and no SG_MUL_VAL_: m<N> signals follow M1"},
		},
		{
			name: "Vector independent signals are ignored silently",
			src:  "BO_ 3221225472 VECTOR__INDEPENDENT_SIG_MSG: 0 Vector__XXX\n SG_ X : 0|8@1+ (1,0) [0|0] \"\" X\n" + good,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db, warns := mustParse(t, tt.src)
			ws := warnStrings(warns)
			if len(ws) != len(tt.warns) {
				t.Fatalf("warnings = %q, want %d matching %q", ws, len(tt.warns), tt.warns)
			}
			for i, w := range tt.warns {
				if !strings.Contains(ws[i], "test.dbc:"+w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, ws[i], "test.dbc:"+w)
				}
			}
			if tt.check != nil {
				tt.check(t, db)
			}
		})
	}
}

func TestParseUnusable(t *testing.T) {
	t.Parallel()
	for _, src := range []string{"", "garbage", "BO_ x", "VERSION \"\"\nBU_: A\n", "BO_ 1 HUGE: 99 X\n"} {
		if _, _, err := Parse("bad.dbc", []byte(src)); !errors.Is(err, ErrUnusable) {
			t.Errorf("Parse(%q) error = %v, want ErrUnusable", src, err)
		}
	}
	if _, _, err := Load("does-not-exist.dbc"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want os.ErrNotExist", err)
	}
}

// TestLoadImport checks opendbc's CM_ "IMPORT x.dbc"; include convention.
func TestLoadImport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("_common.dbc", "CM_ \"IMPORT main.dbc\";\nBO_ 1 COMMON: 8 X\n SG_ S : 0|8@1+ (1,0) [0|255] \"\" X\n")
	write("main.dbc", "CM_ \"IMPORT _common.dbc\";\nCM_ \"IMPORT _missing.dbc\";\n"+
		"BO_ 2 MAIN: 8 X\n SG_ T : 0|8@1+ (1,0) [0|255] \"\" X\nVAL_ 1 S 1 \"one\";\n")
	db, warns, err := Load(filepath.Join(dir, "main.dbc"))
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	var names []string
	for _, m := range db.Messages {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"COMMON", "MAIN"}) {
		t.Errorf("messages = %v", names)
	}
	if _, s, _ := db.Signal("COMMON.S"); s.Values[1] != "one" {
		t.Errorf("VAL_ across import not applied: %v", s.Values)
	}
	if len(warns) != 1 || !strings.Contains(warns[0].String(), "main.dbc:2: skipped IMPORT _missing.dbc") {
		t.Errorf("warnings = %q", warnStrings(warns))
	}
}

// TestLoadRealFiles loads the copies of real files kept in the repository:
// four of them are rejected by a strict parser.
func TestLoadRealFiles(t *testing.T) {
	t.Parallel()
	want := map[string]int{ // messages expected in each file
		"_hyundai_canfd_common.dbc": 37, "chrysler_cusw.dbc": 26, "gm_global_a_lowspeed.dbc": 13,
		"hyundai_canfd.dbc": 88, "tesla_can.dbc": 44, "toyota_radar_dsu_tssp.dbc": 19,
	}
	for _, f := range realFiles(t) {
		db, warns, err := Load(f)
		if err != nil {
			t.Errorf("Load(%s) error = %v", f, err)
			continue
		}
		if n := want[filepath.Base(f)]; len(db.Messages) != n {
			t.Errorf("Load(%s) = %d messages, want %d", f, len(db.Messages), n)
		}
		for _, w := range warns {
			if w.Line <= 0 || w.File == "" {
				t.Errorf("warning without position: %+v", w)
			}
		}
	}
}

// TestSignalExplainsSkips checks that a reference to something dropped
// while loading says where and why.
func TestSignalExplainsSkips(t *testing.T) {
	t.Parallel()
	const src = "BO_ 1 OK: 8 X\n SG_ S : 0|8@1+ (1,0) [0|255] \"\" X\n SG_ BIG : 60|8@1+ (1,0) [0|255] \"\" X\n" +
		" SG_ BAD : 1|x@1+ (1,0) [0|1] \"\" X\n" +
		"BO_ 2 HUGE: 65 X\n SG_ H : 0|8@1+ (1,0) [0|255] \"\" X\n"
	db, _ := mustParse(t, src)
	tests := []struct{ ref, want string }{
		{"OK.BIG", `signal "BIG" in message "OK" (skipped while loading: test.dbc:3: skipped signal OK.BIG: bits 60|8 need 9 bytes`},
		{"OK.BAD", `(skipped while loading: test.dbc:4: skipped SG_: syntax error`},
		{"HUGE.H", `message "HUGE" (skipped while loading: test.dbc:5: skipped BO_: message HUGE: length 65 outside 0..64)`},
		{"OK.Nope", `signal "Nope" in message "OK": not found`},
	}
	for _, tt := range tests {
		_, _, err := db.Signal(tt.ref)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Signal(%q) error = %v, want it to contain %q", tt.ref, err, tt.want)
		}
	}
}

func TestReadFileLimit(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "big.dbc")
	if err := os.WriteFile(path, []byte("BO_ 1 M: 8 X\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readFile(path, 13); err != nil {
		t.Errorf("readFile(limit = size) error = %v", err)
	}
	if _, err := readFile(path, 12); err == nil || !strings.Contains(err.Error(), "larger than 12 bytes") {
		t.Errorf("readFile(limit < size) error = %v", err)
	}
}
