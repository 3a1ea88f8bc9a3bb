// Package topic owns MQTT topic names and topic filters: their validation (section 4.7), matching a
// filter against a name, parsing $share filters (MQTT 5.0 section 4.8.2), and Index, the concurrent
// subscription index that the broker routes PUBLISH packets with and the cluster route table is
// built on.
//
// Like the codec it is pure: no sockets, goroutines or logging. Validation and matching do not
// allocate on success, and neither does Index.Match, which takes no lock (see Index for the design).
//
// Every check cites its normative statement, as in // [MQTT-4.7.1-2]; the ids are MQTT 3.1.1's where
// the two versions number a statement differently, with 5.0's alongside.
package topic
