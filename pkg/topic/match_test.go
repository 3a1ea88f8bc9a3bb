package topic

import "testing"

// matchTests are the examples of MQTT 3.1.1 and 5.0 section 4.7, and the edges around them.
var matchTests = []struct {
	filter, name string
	want         bool
}{
	// 4.7.1.2 multi-level wildcard
	{"sport/tennis/player1/#", "sport/tennis/player1", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
	{"sport/tennis/player1/#", "sport/tennis/player2", false},
	{"sport/tennis/player1/#", "sport/tennis", false},
	{"sport/#", "sport", true},
	{"sport/#", "sport/", true},
	{"sport/#", "sports", false},
	{"#", "sport/tennis/player1", true},
	{"#", "/", true},
	{"#", "a", true},
	// 4.7.1.3 single-level wildcard
	{"sport/tennis/+", "sport/tennis/player1", true},
	{"sport/tennis/+", "sport/tennis/player2", true},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"sport/+", "sport", false},
	{"sport/+", "sport/", true},
	{"+", "sport", true},
	{"+", "/finance", false},
	{"+/+", "/finance", true},
	{"/+", "/finance", true},
	{"+/tennis/#", "sport/tennis/player1", true},
	{"+/tennis/#", "sport/tennis", true},
	{"+/tennis/#", "sport/soccer", false},
	{"sport/+/player1", "sport/tennis/player1", true},
	{"sport/+/player1", "sport//player1", true},
	{"+/+/+", "a/b", false},
	{"+/#", "a", true},
	{"+/#", "/", true},
	// 4.7.2 topics beginning with $ [MQTT-4.7.2-1]
	{"#", "$SYS/monitor/Clients", false},
	{"#", "$SYS", false},
	{"+/monitor/Clients", "$SYS/monitor/Clients", false},
	{"+", "$SYS", false},
	{"+/#", "$SYS/x", false},
	{"$SYS/#", "$SYS/monitor/Clients", true},
	{"$SYS/#", "$SYS", true},
	{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
	{"$SYS/+/Clients", "$SYS/monitor/Clients", true},
	{"a/#", "a/$SYS", true},
	{"a/+", "a/$x", true},
	// 4.7.3 case sensitive, spaces, empty levels, no normalisation
	{"ACCOUNTS", "Accounts", false},
	{"Accounts payable", "Accounts payable", true},
	{"/finance", "finance", false},
	{"finance", "finance/", false},
	{"a//b", "a//b", true},
	{"a//b", "a/b", false},
	{"/", "/", true},
	{"a/b/c", "a/b", false},
	{"a/b", "a/b/c", false},
	{"a/b/#", "a/b/c/d", true},
	{"a/+/#", "a", false},
	{"a/+/#", "a/b", true},
}

func TestMatch(t *testing.T) {
	for _, tt := range matchTests {
		if got := Match(tt.filter, tt.name); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.name, got, tt.want)
		}
	}
}

func TestMatchNoAlloc(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { Match("sport/+/player1/#", "sport/tennis/player1/score/wimbledon") }); n != 0 {
		t.Fatalf("Match allocates %v times", n)
	}
}
