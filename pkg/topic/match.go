package topic

// Match reports whether the topic filter matches the topic name (section 4.7). '+' matches exactly
// one level, which may be empty; '#' matches its own level and every level below, and also the
// parent level ("a/#" matches "a"); a filter starting with '+' or '#' does not match a name starting
// with '$' [MQTT-4.7.2-1]. Matching is case sensitive and byte-wise: no normalisation.
//
// Match does not validate: pass a valid filter and name, and for a shared subscription the filter of
// its Share ("$share/..." is compared literally here). It does not allocate.
func Match(filter, name string) bool {
	if IsSystem(name) && filter != "" && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := cut(filter)
		if !fmore && fl == "#" {
			return true
		}
		nl, nrest, nmore := cut(name)
		if fl != nl && fl != "+" {
			return false
		}
		switch {
		case !nmore:
			// The name ends here: so must the filter, or continue with just "/#".
			return !fmore || frest == "#"
		case !fmore:
			return false
		}
		filter, name = frest, nrest
	}
}
