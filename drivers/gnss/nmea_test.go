package gnss

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseSentence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    Sentence
		wantErr error
	}{
		{"gga with crlf", "$GNGGA,171926.00,4404.14063,N,12118.85478,W,1,12,0.91,1147.2,M,-21.3,M,,*44\r\n",
			Sentence{Talker: "GN", Type: "GGA", Fields: []string{"171926.00", "4404.14063", "N", "12118.85478", "W", "1", "12", "0.91", "1147.2", "M", "-21.3", "M", "", ""}}, nil},
		{"lower-case checksum", "$GPGSA,A,1,,,,,,,,,,,,,,,*1e", Sentence{Talker: "GP", Type: "GSA", Fields: []string{"A", "1", "", "", "", "", "", "", "", "", "", "", "", "", "", "", ""}}, nil},
		{"proprietary", "$PMTK010,001*2E", Sentence{Talker: "P", Type: "MTK010", Fields: []string{"001"}}, nil},
		{"bad checksum", "$GPGSA,A,1,,,,,,,,,,,,,,,*1F", Sentence{}, ErrChecksum},
		{"no checksum", "$GPGSA,A,1,,,,,,,,,,,,,,,", Sentence{}, ErrChecksum},
		{"checksum not at end", "$GPGSA,A,1*1E,,", Sentence{}, ErrChecksum},
		{"no dollar", "GPGSA,A,1,,,,,,,,,,,,,,,*1E", Sentence{}, ErrSyntax},
		{"binary inside", "$GPG\x01A,A,1*00", Sentence{}, ErrSyntax},
		{"short address", frame("GPG,A"), Sentence{}, ErrSyntax},
		{"empty", "", Sentence{}, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSentence([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseSentence() error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ParseSentence() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func mustSentence(t *testing.T, s string) Sentence {
	t.Helper()
	out, err := ParseSentence([]byte(s))
	if err != nil {
		t.Fatalf("ParseSentence(%q) error = %v", s, err)
	}
	return out
}

var approx = cmpopts.EquateApprox(0, 1e-9)

func TestParseGGAEveryTalker(t *testing.T) {
	t.Parallel()
	// The same fix from each constellation's talker; checksums recomputed.
	for _, talker := range []string{"GP", "GN", "GL", "GA", "BD", "GB", "GQ"} {
		body := talker + "GGA,081439.000,5212.981832,N,00653.104686,E,1,3,2.88,102.930,M,47.093,M,,"
		s := mustSentence(t, frame(body))
		if s.Talker != talker {
			t.Errorf("talker = %q, want %q", s.Talker, talker)
		}
		got, err := ParseGGA(s)
		if err != nil {
			t.Fatalf("%s: ParseGGA() error = %v", talker, err)
		}
		want := GGA{
			Time: TimeOfDay{D: 8*time.Hour + 14*time.Minute + 39*time.Second, Valid: true},
			Lat:  52 + 12.981832/60, Lon: 6 + 53.104686/60, HasPos: true,
			Quality: 1, HasQuality: true, Sats: 3, HasSats: true, HDOP: 2.88, HasHDOP: true, Alt: 102.93, HasAlt: true,
		}
		if diff := cmp.Diff(want, got, approx); diff != "" {
			t.Errorf("%s: ParseGGA() mismatch (-want +got):\n%s", talker, diff)
		}
	}
}

// frame adds "$" and the checksum to a sentence body.
func frame(body string) string {
	var sum byte
	for i := 0; i < len(body); i++ {
		sum ^= body[i]
	}
	const hex = "0123456789ABCDEF"
	return "$" + body + "*" + string(hex[sum>>4]) + string(hex[sum&15])
}

func TestParseRMC(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want RMC
	}{
		{"valid south west", "GPRMC,030719.00,A,3747.0873,S,17518.8938,W,0.69,181.39,160804,20.5,E,A", RMC{
			Time:  TimeOfDay{D: 3*time.Hour + 7*time.Minute + 19*time.Second, Valid: true},
			Valid: true, FAA: 'A', Lat: -(37 + 47.0873/60), Lon: -(175 + 18.8938/60), HasPos: true,
			Speed: 0.69 * 1852 / 3600, HasSpeed: true, Course: 181.39, HasCourse: true,
			Date: time.Date(2004, 8, 16, 0, 0, 0, 0, time.UTC), HasDate: true,
		}},
		{"void drops placeholder position", "GPRMC,120316,V,4221.4394,N,01321.9948,E,000.0,000.0,150305,001.4,E", RMC{
			Time: TimeOfDay{D: 12*time.Hour + 3*time.Minute + 16*time.Second, Valid: true},
			Date: time.Date(2005, 3, 15, 0, 0, 0, 0, time.UTC), HasDate: true,
		}},
		{"faa mode N is invalid", "GPRMC,081434.590,A,5212.978993,N,00653.097906,E,0.052,0.00,230808,,,N", RMC{
			Time: TimeOfDay{D: 8*time.Hour + 14*time.Minute + 34*time.Second + 590*time.Millisecond, Valid: true},
			FAA:  'N',
			Date: time.Date(2008, 8, 23, 0, 0, 0, 0, time.UTC), HasDate: true,
		}},
		{"nineties date", "GPRMC,000000,A,0000.0000,N,00000.0000,E,,,311299,,", RMC{
			Time: TimeOfDay{Valid: true}, Valid: true, HasPos: true,
			Date: time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC), HasDate: true,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseRMC(mustSentence(t, frame(tt.in)))
			if err != nil {
				t.Fatalf("ParseRMC() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got, approx); diff != "" {
				t.Errorf("ParseRMC() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseGSAVTGGLLZDA(t *testing.T) {
	t.Parallel()
	gsa, err := ParseGSA(mustSentence(t, "$GNGSA,A,3,01,11,31,14,22,32,04,25,03,,,,1.56,0.91,1.27*15"))
	if err != nil || gsa.FixType != 3 || gsa.Sats != 9 || gsa.HDOP != 0.91 || !gsa.HasHDOP {
		t.Errorf("ParseGSA() = %+v, %v", gsa, err)
	}
	vtg, err := ParseVTG(mustSentence(t, "$GNVTG,,T,,M,0.117,N,0.216,K,A*3F"))
	if err != nil || !vtg.HasSpeed || math.Abs(vtg.Speed-0.117*1852/3600) > 1e-9 || vtg.HasCourse || !vtg.Valid {
		t.Errorf("ParseVTG() = %+v, %v", vtg, err)
	}
	old, err := ParseVTG(mustSentence(t, frame("GPVTG,054.7,034.4,005.5,010.2")))
	if err != nil || old.Course != 54.7 || math.Abs(old.Speed-5.5*1852/3600) > 1e-9 {
		t.Errorf("ParseVTG(NMEA 2.0 form) = %+v, %v", old, err)
	}
	gll, err := ParseGLL(mustSentence(t, "$GNGLL,4404.14066,N,12118.85481,W,171925.00,A,A*66"))
	if err != nil || !gll.Valid || !gll.HasPos || math.Abs(gll.Lon+121.3142468333) > 1e-9 {
		t.Errorf("ParseGLL() = %+v, %v", gll, err)
	}
	zda, err := ParseZDA(mustSentence(t, frame("GPZDA,201530.00,04,07,2002,00,00")))
	if err != nil || !zda.HasDate || !zda.Date.Equal(time.Date(2002, 7, 4, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("ParseZDA() = %+v, %v", zda, err)
	}
	gsv, err := ParseGSV(mustSentence(t, "$GPGSV,4,1,13,01,53,280,36,03,29,301,24,04,55,223,37,08,38,166,16*7C"))
	if err != nil || gsv.Count != 4 || gsv.Index != 1 || gsv.InView != 13 {
		t.Errorf("ParseGSV() = %+v, %v", gsv, err)
	}
}

func TestParseFieldErrors(t *testing.T) {
	t.Parallel()
	bad := []string{
		"GPGGA,25xx00,4404.1,N,12118.8,W,1,12,0.9,1147.2,M,,M,,",
		"GPGGA,171926,4460.5,N,12118.8,W,1,12,0.9,1147.2,M,,M,,",
		"GPGGA,171926,4404.1,X,12118.8,W,1,12,0.9,1147.2,M,,M,,",
		"GPGGA,171926,4404.1,N,12118.8,W,1,12,NaN,1147.2,M,,M,,",
		"GPRMC,171926,A,4404.1,N,12118.8,W,0.1,,321399,,",
	}
	for _, b := range bad {
		s := mustSentence(t, frame(b))
		var err error
		if s.Type == "GGA" {
			_, err = ParseGGA(s)
		} else {
			_, err = ParseRMC(s)
		}
		if !errors.Is(err, ErrSyntax) {
			t.Errorf("%q: error = %v, want ErrSyntax", b, err)
		}
	}
}

func FuzzParseSentence(f *testing.F) {
	for _, s := range []string{
		"$GNGGA,171926.00,4404.14063,N,12118.85478,W,1,12,0.91,1147.2,M,-21.3,M,,*44\r\n",
		"$GNRMC,171926.00,A,4404.14063,N,12118.85478,W,0.117,,180315,,,A*76",
		"$GNGSA,A,3,01,11,31,14,22,32,04,25,03,,,,1.56,0.91,1.27*15",
		"$GNVTG,,T,,M,0.117,N,0.216,K,A*3F",
		"$GPGSV,4,1,13,01,53,280,36,03,29,301,24,04,55,223,37,08,38,166,16*7C",
		"$GNGLL,4404.14066,N,12118.85481,W,171925.00,A,A*66",
		"$PMTK010,001*2E",
		"$GNGNS,224749.00,3333.4268304,N,11153.3538273,W,DD,19,0.6,406.110,-26.294,6.0,0138,S*1E",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSentence(b)
		if err != nil {
			return
		}
		// Whatever parses must decode without panicking, and a decoder
		// must accept it.
		_, _ = ParseGGA(s)
		_, _ = ParseRMC(s)
		_, _ = ParseGSA(s)
		_, _ = ParseVTG(s)
		_, _ = ParseGLL(s)
		_, _ = ParseGSV(s)
		_, _ = ParseZDA(s)
		_, _ = ParseGNS(s)
		var d Decoder
		_, _, _ = d.Feed(s)
		if f, ok := d.Flush(); ok && f.HasPos && (math.Abs(f.Lat) > 90 || math.Abs(f.Lon) > 180) {
			t.Fatalf("position out of range: %v,%v", f.Lat, f.Lon)
		}
	})
}
