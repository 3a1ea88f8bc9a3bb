package topic

import (
	"errors"
	"testing"
)

func TestParseShare(t *testing.T) {
	tests := []struct {
		name   string
		filter string
		want   Share
		shared bool
		ok     bool
	}{
		{"not shared", "sport/#", Share{Filter: "sport/#"}, false, true},
		{"not shared: system", "$SYS/#", Share{Filter: "$SYS/#"}, false, true},
		{"not shared: $shared", "$shared/g/a", Share{Filter: "$shared/g/a"}, false, true},
		{"not shared: case", "$Share/g/a", Share{Filter: "$Share/g/a"}, false, true},
		{"not shared: not first level", "a/$share/g/b", Share{Filter: "a/$share/g/b"}, false, true},
		{"not shared: invalid is returned as is", "a/#/b", Share{Filter: "a/#/b"}, false, true},
		{"shared", "$share/consumer1/sport/tennis/+", Share{"consumer1", "sport/tennis/+"}, true, true},
		{"shared hash", "$share/g/#", Share{"g", "#"}, true, true},
		{"shared plus", "$share/g/+", Share{"g", "+"}, true, true},
		{"shared empty level", "$share/g//", Share{"g", "/"}, true, true},
		{"shared leading slash", "$share/g//finance", Share{"g", "/finance"}, true, true},
		{"shared system filter", "$share/g/$SYS/#", Share{"g", "$SYS/#"}, true, true},
		{"shared nested share filter", "$share/g/$share/h/x", Share{"g", "$share/h/x"}, true, true},
		{"shared unicode group", "$share/grüppe/a", Share{"grüppe", "a"}, true, true},
		{"no share name MQTT-4.8.2-1", "$share", Share{}, true, false},
		{"empty share name MQTT-4.8.2-1", "$share//a", Share{}, true, false},
		{"empty share name no filter MQTT-4.8.2-1", "$share/", Share{}, true, false},
		{"share name plus MQTT-4.8.2-2", "$share/g+/a", Share{}, true, false},
		{"share name is plus MQTT-4.8.2-2", "$share/+/a", Share{}, true, false},
		{"share name hash MQTT-4.8.2-2", "$share/#", Share{}, true, false},
		{"share name hash with filter MQTT-4.8.2-2", "$share/g#/a", Share{}, true, false},
		{"no slash after share name MQTT-4.8.2-2", "$share/group", Share{}, true, false},
		{"empty filter MQTT-4.8.2-2", "$share/group/", Share{}, true, false},
		{"inner hash not last MQTT-4.8.2-2 MQTT-4.7.1-2", "$share/g/a/#/b", Share{}, true, false},
		{"inner hash not alone MQTT-4.8.2-2 MQTT-4.7.1-2", "$share/g/a#", Share{}, true, false},
		{"inner plus not alone MQTT-4.8.2-2 MQTT-4.7.1-3", "$share/g/a+", Share{}, true, false},
		{"U+0000 MQTT-4.7.3-2", "$share/g\x00/a", Share{}, true, false},
		{"invalid UTF-8 MQTT-1.5.4-1", "$share/\xff/a", Share{}, true, false},
		{"too long MQTT-4.7.3-3", "$share/g/" + long, Share{}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, shared, err := ParseShare(tt.filter)
			if s != tt.want || shared != tt.shared || (err == nil) != tt.ok {
				t.Fatalf("ParseShare(%.40q) = %+v, %v, %v; want %+v, %v, ok=%v", tt.filter, s, shared, err, tt.want, tt.shared, tt.ok)
			}
			if err != nil && (!errors.Is(err, ErrInvalidShare) || !errors.Is(err, ErrInvalidFilter)) {
				t.Fatalf("error %v does not wrap both ErrInvalidShare and ErrInvalidFilter", err)
			}
			if shared && err == nil && s.String() != tt.filter {
				t.Fatalf("String() = %q, want %q", s.String(), tt.filter)
			}
		})
	}
}

func TestParseShareNoAlloc(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _, _, _ = ParseShare("$share/group/sport/+/player1/#") }); n != 0 {
		t.Fatalf("ParseShare allocates %v times", n)
	}
}
