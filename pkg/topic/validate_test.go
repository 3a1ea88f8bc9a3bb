package topic

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

var long = strings.Repeat("a", MaxLength)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name  string
		topic string
		ok    bool
	}{
		{"plain", "sport/tennis/player1", true},
		{"single level", "sport", true},
		{"leading slash", "/finance", true},
		{"trailing slash", "sport/", true},
		{"only slash", "/", true},
		{"empty levels", "a//b", true},
		{"space", "Accounts payable", true},
		{"system", "$SYS/monitor/Clients", true},
		{"share-looking name", "$share/g/a", true},
		{"unicode", "häuser/温度/🌡", true},
		{"max length MQTT-4.7.3-3", long, true},
		{"empty MQTT-4.7.3-1", "", false},
		{"too long MQTT-4.7.3-3", long + "a", false},
		{"U+0000 MQTT-4.7.3-2", "a/\x00/b", false},
		{"invalid UTF-8 MQTT-1.5.4-1", "a/\xff", false},
		{"surrogate MQTT-1.5.4-1", "a/\xed\xa0\x80", false},
		{"plus MQTT-3.3.2-2", "sport/+", false},
		{"hash MQTT-3.3.2-2", "sport/#", false},
		{"plus inside level MQTT-3.3.2-2", "sp+ort", false},
		{"hash inside level MQTT-3.3.2-2", "sp#ort", false},
		{"lone hash MQTT-3.3.2-2", "#", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName(tt.topic)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateName(%.40q) = %v, want ok=%v", tt.topic, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidName) {
				t.Fatalf("error %v does not wrap ErrInvalidName", err)
			}
		})
	}
}

func TestValidateFilter(t *testing.T) {
	tests := []struct {
		name   string
		filter string
		share  bool // a share error: wraps ErrInvalidShare too
		ok     bool
	}{
		{"plain", "sport/tennis/player1", false, true},
		{"multi-level", "sport/tennis/player1/#", false, true},
		{"hash alone", "#", false, true},
		{"single-level", "sport/tennis/+", false, true},
		{"plus alone", "+", false, true},
		{"plus first and last", "+/tennis/#", false, true},
		{"plus plus", "+/+", false, true},
		{"slash plus", "/+", false, true},
		{"plus empty level", "sport/+/", false, true},
		{"system", "$SYS/#", false, true},
		{"shared", "$share/g/sport/#", false, true},
		{"not share: $shared", "$shared/x", false, true},
		{"not share: case", "$SHARE/x", false, true},
		{"max length MQTT-4.7.3-3", long, false, true},
		{"empty MQTT-4.7.3-1", "", false, false},
		{"too long MQTT-4.7.3-3", long + "a", false, false},
		{"U+0000 MQTT-4.7.3-2", "a/\x00", false, false},
		{"invalid UTF-8 MQTT-1.5.4-1", "a/\xc0\xaf", false, false},
		{"hash not last MQTT-4.7.1-2", "sport/#/ranking", false, false},
		{"hash not alone MQTT-4.7.1-2", "sport/tennis#", false, false},
		{"hash first not alone MQTT-4.7.1-2", "#a", false, false},
		{"hash then slash MQTT-4.7.1-2", "#/", false, false},
		{"double hash MQTT-4.7.1-2", "##", false, false},
		{"plus not alone MQTT-4.7.1-3", "sport+", false, false},
		{"plus suffix MQTT-4.7.1-3", "sport/+tennis", false, false},
		{"plus plus in level MQTT-4.7.1-3", "a/++", false, false},
		{"share error MQTT-4.8.2-1", "$share//a", true, false},
		{"share error MQTT-4.8.2-2", "$share/g", true, false},
		{"share inner MQTT-4.7.1-2", "$share/g/a/#/b", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateFilter(tt.filter)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateFilter(%.40q) = %v, want ok=%v", tt.filter, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidFilter) {
				t.Fatalf("error %v does not wrap ErrInvalidFilter", err)
			}
			if err != nil && errors.Is(err, ErrInvalidShare) != tt.share {
				t.Fatalf("error %v: wraps ErrInvalidShare = %v, want %v", err, !tt.share, tt.share)
			}
		})
	}
}

func TestValidateNoAlloc(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		_ = ValidateName("sport/tennis/player1")
		_ = ValidateFilter("sport/+/player1/#")
		_ = ValidateFilter("$share/group/sport/+/player1/#")
	})
	if n != 0 {
		t.Fatalf("validation allocates %v times", n)
	}
}

func TestLevels(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"a", []string{"a"}},
		{"/", []string{"", ""}},
		{"a/b/c", []string{"a", "b", "c"}},
		{"/a/", []string{"", "a", ""}},
		{"a//#", []string{"a", "", "#"}},
	}
	for _, tt := range tests {
		got := slices.Collect(Levels(tt.in))
		if !slices.Equal(got, tt.want) {
			t.Errorf("Levels(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if n := LevelCount(tt.in); n != len(tt.want) {
			t.Errorf("LevelCount(%q) = %d, want %d", tt.in, n, len(tt.want))
		}
	}
	for range Levels("a/b/c") {
		break // an early stop must not panic
	}
	n := 0
	if a := testing.AllocsPerRun(100, func() {
		for l := range Levels("sport/tennis/player1") {
			n += len(l)
		}
	}); a != 0 {
		t.Fatalf("ranging over Levels allocates %v times", a)
	}
}

func TestIsSystem(t *testing.T) {
	for in, want := range map[string]bool{"$SYS/x": true, "$": true, "a/$SYS": false, "": false, "SYS": false} {
		if IsSystem(in) != want {
			t.Errorf("IsSystem(%q) = %v", in, !want)
		}
	}
}
