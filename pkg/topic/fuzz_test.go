package topic

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// FuzzMatch checks Match against Index.Match. The fuzzed filter is subscribed together with filters
// derived from the name (the name itself, each of its prefixes with "/#", each level replaced by
// '+'), so that the index holds overlapping filters that matter for this name.
func FuzzMatch(f *testing.F) {
	for _, tt := range matchTests {
		f.Add(tt.filter, tt.name)
	}
	for _, s := range [][2]string{
		{"$share/g/sport/+", "sport/tennis"}, {"$share/g/#", "$SYS/x"}, {"$share/g/$SYS/#", "$SYS/x"},
		{"a/#/b", "a/x/b"}, {"a+", "a+"}, {"", ""}, {"$share/g", "a"}, {"a/\x00", "a/\x00"}, {"\xff", "\xff"},
		{"//#", "//"}, {"+/+/+/+", "///"}, {"$share", "$share"}, {"$", "$"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, name string) {
		got := Match(filter, name) // must not panic, valid or not
		ferr, nerr := ValidateFilter(filter), ValidateName(name)
		if nerr != nil {
			return
		}
		if IsSystem(name) && strings.HasPrefix(filter, "#") && got {
			t.Fatalf("Match(%q, %q): '#' matched a $ topic", filter, name) // [MQTT-4.7.2-1]
		}
		if !IsSystem(name) && !Match("#", name) {
			t.Fatalf("'#' does not match %q", name)
		}
		if !isShare(name) {
			if err := ValidateFilter(name); err != nil {
				t.Fatalf("valid name %q is not a valid filter: %v", name, err)
			}
			if !Match(name, name) {
				t.Fatalf("%q does not match itself", name)
			}
		}
		if ferr != nil {
			return
		}
		filters := []string{filter, name}
		levels := strings.Split(name, "/")
		for i := range levels {
			filters = append(filters, strings.Join(levels[:i], "/")+"/#")
			plus := slices.Clone(levels)
			plus[i] = "+"
			filters = append(filters, strings.Join(plus, "/"))
		}
		ix := NewIndex[int, int]()
		var want []result
		for sub, f := range filters {
			if ValidateFilter(f) != nil {
				continue
			}
			if _, err := ix.Subscribe(f, sub, sub); err != nil {
				t.Fatalf("Subscribe(%q): %v", f, err)
			}
			s, shared, _ := ParseShare(f)
			if !Match(s.Filter, name) {
				continue
			}
			if shared {
				want = append(want, groupResult(SharedGroup[int, int]{s.Group, s.Filter, []Member[int, int]{{sub, sub}}}))
			} else {
				want = append(want, subResult(f, sub, sub))
			}
		}
		// Two subscriptions may share a filter (or a group); merge them the way the index does.
		want = mergeExpected(want)
		slices.Sort(want)
		if got := matchAll(ix, name); !slices.Equal(got, want) {
			t.Fatalf("Index.Match(%q) with filters %q:\n got %q\nwant %q", name, filters, got, want)
		}
		if ix.HasMatch(name) != (len(want) > 0) {
			t.Fatalf("HasMatch(%q) = %v", name, len(want) == 0)
		}
		for sub, f := range filters {
			ix.Unsubscribe(f, sub)
		}
		if ix.Len() != 0 || ix.nodes != 0 {
			t.Fatalf("not empty after unsubscribing: Len %d, %d nodes", ix.Len(), ix.nodes)
		}
	})
}

// mergeExpected joins group results for the same "$share/g/f" into one with all members, in
// subscription order, as Index.Match reports them.
func mergeExpected(rs []result) []result {
	var out []result
	idx := map[string]int{}
	for _, r := range rs {
		if !strings.HasPrefix(string(r), "$share/") {
			out = append(out, r)
			continue
		}
		key, members, _ := strings.Cut(string(r), " ")
		if i, ok := idx[key]; ok {
			out[i] += result(" " + members)
			continue
		}
		idx[key] = len(out)
		out = append(out, r)
	}
	return out
}

// FuzzParseShare checks that ParseShare does not panic, agrees with ValidateFilter, and round-trips.
func FuzzParseShare(f *testing.F) {
	for _, s := range []string{
		"$share/g/a", "$share/g/#", "$share/g//", "$share", "$share/", "$share//a", "$share/g", "$share/g/",
		"$share/g+/a", "$share/g/a/#/b", "$share/g/$share/h/x", "$shared/a", "sport/#", "", "\x00", "$share/\xff/a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		s, shared, err := ParseShare(filter)
		verr := ValidateFilter(filter)
		if !shared {
			if err != nil || s != (Share{Filter: filter}) || isShare(filter) {
				t.Fatalf("ParseShare(%q) = %+v, %v, %v for a non-shared filter", filter, s, shared, err)
			}
			return
		}
		if !strings.HasPrefix(filter, "$share") {
			t.Fatalf("ParseShare(%q) says shared", filter)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidShare) || !errors.Is(err, ErrInvalidFilter) || s != (Share{}) {
				t.Fatalf("ParseShare(%q) = %+v, %v", filter, s, err)
			}
			if verr == nil {
				t.Fatalf("ParseShare(%q) fails (%v) but ValidateFilter accepts it", filter, err)
			}
			return
		}
		if verr != nil {
			t.Fatalf("ParseShare(%q) accepts it but ValidateFilter fails: %v", filter, verr)
		}
		if s.String() != filter {
			t.Fatalf("round trip: %q → %+v → %q", filter, s, s.String())
		}
		if s.Group == "" || strings.ContainsAny(s.Group, "/+#") || s.Filter == "" || checkLevels(s.Filter) != "" {
			t.Fatalf("ParseShare(%q) = %+v: bad group or filter", filter, s)
		}
		if s2, shared2, err2 := ParseShare(s.String()); s2 != s || !shared2 || err2 != nil {
			t.Fatalf("reparse of %q = %+v, %v, %v", s.String(), s2, shared2, err2)
		}
	})
}
