// Package wire is what MCloudTT's processes exchange through Redis, as pure code with no I/O: the
// binary envelope that carries MQTT messages between broker replicas (Message, MessageID,
// AppendMessage, DecodeBatch), presence events (Presence), route-table and persistent-subscription
// notices (RouteChange, DurableSubsChange), heartbeats (Heartbeat), and the names of every Redis
// channel and key the services share (Names).
//
// It does not import a Redis client, so that a message id or a decoder costs little to import.
// Package bus, which moves these values through Redis, keeps every name of this package under its
// own (bus.Message is wire.Message).
package wire
