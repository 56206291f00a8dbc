package gnss

import (
	"testing"
	"time"
)

func feedAll(t *testing.T, lines ...string) []Fix {
	t.Helper()
	var d Decoder
	var out []Fix
	for _, l := range lines {
		f, ok, err := d.Feed(mustSentence(t, frame(l)))
		if err != nil {
			t.Fatalf("Feed(%q) error = %v", l, err)
		}
		if ok {
			out = append(out, f)
		}
	}
	if f, ok := d.Flush(); ok {
		out = append(out, f)
	}
	return out
}

func TestDecoderModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		lines []string
		want  Mode
		pos   bool
	}{
		{"gga with altitude is 3d", []string{"GPGGA,120000,4221.3871,N,01322.0800,E,1,05,1.2,746.1,M,44.2,M,,"}, Mode3D, true},
		{"gga without altitude is 2d", []string{"GPGGA,120000,4221.3871,N,01322.0800,E,1,05,1.2,,M,,M,,"}, Mode2D, true},
		{"gga quality 0 is no fix", []string{"GPGGA,120000,4221.3871,N,01322.0800,E,0,05,,,M,,M,,"}, ModeNoFix, false},
		{"gga with no satellites is no fix", []string{"GPGGA,120000,4221.3871,N,01322.0800,E,1,00,3.1,746.1,M,,M,,"}, ModeNoFix, false},
		{"gsa mode without gga", []string{"GNRMC,120000,A,4221.3871,N,01322.0800,E,0.1,,150305,,,A", "GNGSA,A,2,01,03,14,,,,,,,,,,3.1,3.1,"}, Mode2D, true},
		{"best gsa of several", []string{"GNRMC,120000,A,4221.3871,N,01322.0800,E,0.1,,150305,,,A", "GNGSA,A,2,01,,,,,,,,,,,,3,3,3", "GNGSA,A,3,67,83,,,,,,,,,,,2,1,1"}, Mode3D, true},
		{"rmc void", []string{"GPRMC,120000,V,4221.3871,N,01322.0800,E,0.1,,150305,,,N"}, ModeNoFix, false},
		{"rmc valid alone", []string{"GPRMC,120000,A,4221.3871,N,01322.0800,E,0.1,,150305,,,A"}, Mode2D, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fixes := feedAll(t, tt.lines...)
			if len(fixes) != 1 {
				t.Fatalf("got %d fixes, want 1", len(fixes))
			}
			if f := fixes[0]; f.Mode != tt.want || f.HasPos != tt.pos {
				t.Errorf("fix mode %d pos %v, want %d pos %v", f.Mode, f.HasPos, tt.want, tt.pos)
			}
		})
	}
}

func TestDecoderEpochsAndTime(t *testing.T) {
	t.Parallel()
	fixes := feedAll(t,
		"GNGSA,A,3,01,11,,,,,,,,,,,1.5,0.9,1.2", // before any time: joins the first epoch
		"GNRMC,235959.50,A,4404.14063,N,12118.85478,W,1.944,90.0,311225,,,A",
		"GNGGA,235959.50,4404.14063,N,12118.85478,W,1,12,0.91,1147.2,M,-21.3,M,,",
		"GNGGA,000000.50,4404.14100,N,12118.85478,W,1,12,0.91,1147.3,M,-21.3,M,,",
	)
	if len(fixes) != 2 {
		t.Fatalf("got %d fixes, want 2", len(fixes))
	}
	f := fixes[0]
	wantT := time.Date(2025, 12, 31, 23, 59, 59, 500e6, time.UTC)
	if !f.Time.Equal(wantT) || !f.TimeValid || f.Mode != Mode3D || !f.HasSpeed || f.Course != 90 || f.Sats != 12 || f.HDOP != 0.91 {
		t.Errorf("first fix = %+v", f)
	}
	if want := 1.944 * 1852 / 3600; f.Speed < want-1e-9 || f.Speed > want+1e-9 {
		t.Errorf("speed = %v, want %v m/s", f.Speed, want)
	}
	// The next epoch is past midnight: the date rolls over, but without an
	// RMC in the epoch its time is not marked valid for clock use.
	g := fixes[1]
	if want := time.Date(2026, 1, 1, 0, 0, 0, 500e6, time.UTC); !g.Time.Equal(want) || g.TimeValid {
		t.Errorf("second fix time = %v valid %v, want %v invalid", g.Time, g.TimeValid, want)
	}
}

func TestDecoderStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		lines  []string
		mode   Mode
		status Status
		pos    bool
	}{
		{"autonomous", []string{"GPGGA,120000,4221.3871,N,01322.0800,E,1,05,1.2,746.1,M,44.2,M,,"}, Mode3D, StatusFix, true},
		{"dgps", []string{"GPGGA,120000,4221.3871,N,01322.0800,E,2,05,1.2,746.1,M,44.2,M,,"}, Mode3D, StatusDGPS, true},
		{"rtk fixed", []string{"GNGGA,120000,4221.3871,N,01322.0800,E,4,12,0.6,746.1,M,44.2,M,1.0,0001"}, Mode3D, StatusRTKFixed, true},
		{"rtk float", []string{"GNGGA,120000,4221.3871,N,01322.0800,E,5,12,0.6,746.1,M,44.2,M,1.0,0001"}, Mode3D, StatusRTKFloat, true},
		// 0 satellites in the GGA, then a valid RMC: the later sentence
		// decides (as in gpsd); the GGA's altitude makes it 3D.
		{"dead reckoning", []string{"GPGGA,120000,4221.3871,N,01322.0800,E,6,00,,746.1,M,44.2,M,,", "GPRMC,120000,A,4221.3871,N,01322.0800,E,0.1,,150305,,,E"}, Mode3D, StatusDR, true},
		{"gga without satellites, rmc before it", []string{"GPRMC,120000,A,4221.3871,N,01322.0800,E,0.1,,150305,,,A", "GPGGA,120000,4221.3871,N,01322.0800,E,1,00,,746.1,M,44.2,M,,"}, ModeNoFix, StatusFix, false},
		{"rmc faa d", []string{"GPRMC,120000,A,4221.3871,N,01322.0800,E,0.1,,150305,,,D"}, Mode2D, StatusDGPS, true},
		// A Garmin in demo mode (gpsd: test/daemon/GPSmap-76S.log): GGA
		// quality 8, RMC and GLL status V with FAA mode S.
		{"simulator", []string{
			"GPRMC,125106,V,3854.5087,N,07726.4523,W,0.0,0.0,241011,10.5,W,S",
			"GPGGA,125106,3854.5087,N,07726.4523,W,8,10,2.0,268.8,M,-33.9,M,,",
			"GPGSA,A,3,03,07,08,11,13,16,19,23,24,28,,,3.6,2.0,3.0",
			"GPGLL,3854.5087,N,07726.4523,W,125106,V,S",
		}, Mode3D, StatusSimulated, true},
		{"gns only", []string{"GNGNS,224749.00,3333.4268304,N,11153.3538273,W,DD,19,0.6,406.110,-26.294,6.0,0138,S"}, Mode3D, StatusDGPS, true},
		{"gns not valid", []string{"GNGNS,224749.00,3333.4268304,N,11153.3538273,W,NN,19,0.6,406.110,-26.294,,,V"}, ModeUnknown, StatusNoFix, false},
		{"gll only", []string{"GPGLL,4916.45,N,12311.12,W,225444,A,A"}, Mode2D, StatusFix, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fixes := feedAll(t, tt.lines...)
			if len(fixes) != 1 {
				t.Fatalf("got %d fixes, want 1", len(fixes))
			}
			f := fixes[0]
			if f.Mode != tt.mode || f.Status != tt.status || f.HasPos != tt.pos {
				t.Errorf("fix mode %d status %v pos %v, want %d %v %v", f.Mode, f.Status, f.HasPos, tt.mode, tt.status, tt.pos)
			}
			if f.Status == StatusSimulated && f.Status.Real() {
				t.Error("a simulated fix counts as real")
			}
		})
	}
}
