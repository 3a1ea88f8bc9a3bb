// Package bus is how MCloudTT's processes talk to each other through Redis. It owns:
//
//   - the names of every Redis channel and key the services share (Names), so broker, adapter and
//     health gateway never spell them twice;
//   - the binary envelope that carries MQTT messages between broker replicas (Message,
//     AppendMessage, DecodeBatch): pure code, no I/O;
//   - the Bus: batching of messages per destination replica into one PUBLISH (SPUBLISH on a
//     Redis Cluster), the subscription to the replica's own channels, its health check,
//     reconnects with backoff, and the status readiness probes follow;
//   - heartbeats (Heartbeat, PublishHeartbeat, DecodeHeartbeat) and the cluster route table
//     (AddRoutes, RemoveRoutes, Routes, Replicas, RouteChange).
//   - the broker's side of the export to BigQuery (Export, export.go): a bounded queue written to
//     the Redis Stream Names.Export in entries of up to ExportBatch messages (one envelope batch
//     each, one XADD per entry), at least once; the BigQuery adapter reads it with a consumer
//     group and deduplicates by message id.
//   - management requests and replies on the replicas' control channels (Request, RequestAll,
//     Options.OnRequest; request.go) and the operators' bans kept in Redis (bans.go), for the
//     health gateway's management API.
//
// The names, the envelope and the codecs of presence events, notices and heartbeats are defined
// in package wire, which has no Redis client; bus keeps them under the same names (bus.Message
// is wire.Message).
//
// It does not decide where a message goes: the broker's router looks up which replicas have
// matching subscriptions and calls Publish once per destination replica.
//
// # Data flow
//
//	replica A: Publish(dest B, msg) ─▶ pending batch for B ─▶ flusher: one PUBLISH mcloudtt:{B}:in
//	                                                           (all due destinations pipelined)
//	replica B: subscription connection ◀─ Redis ─┘  OnBatch(batch) ─▶ DecodeBatch ─▶ router
//
// # Batching
//
// Publish appends the message's encoding to the pending batch of its destination and returns.
// One flusher goroutine waits until a batch reaches Options.BatchMaxBytes or Options.BatchMaxDelay
// has passed since the oldest pending message, then sends every pending batch of every
// destination, one PUBLISH per batch, all in one pipeline, and calls their done callbacks when the
// replies are in. While a pipeline is in flight new messages keep collecting, so under load batches
// grow by themselves and the Redis command rate stays far below the message rate. There is one
// pipeline in flight at a time, which keeps the batches for one destination in order.
//
// Measured on two cores with a local redis-server and 64-byte payloads (BenchmarkBusPaced,
// BenchmarkBusThroughput): at saturation about 3.5M messages/s end to end in batches of ~1400
// (0.0007 PUBLISH per message) whatever the delay. Below saturation the delay is the trade-off;
// per destination replica, PUBLISH commands per message and Publish-to-OnBatch latency (p50) are:
//
//	offered/dest   delay 0          100µs            500µs (default)   1ms
//	10k msg/s      0.30   0.1ms     0.12   0.2ms     0.080  1.3ms      0.077  1.4ms
//	100k msg/s     0.16   0.1ms     0.015  0.2ms     0.008  1.3ms      0.008  1.3ms
//	1M msg/s       0.015  0.1ms     0.0024 0.3ms     0.0012 0.6ms      0.0011 0.7ms
//
// The default, 500µs, keeps a destination that receives from about 20k msg/s up under 0.05
// commands per message, for about a millisecond of added latency; 100µs needs about 100k msg/s
// for that. Delays under a millisecond are only kept precisely while messages keep coming (each
// Publish checks the deadline): the flusher's own timer sleeps in whole milliseconds when the
// process is otherwise idle, because Go's timers wait in epoll_wait.
//
// # Delivery
//
// Publish's done(nil) means Redis accepted the PUBLISH and at that moment at least one client was
// subscribed to the destination channel (else ErrNoReceiver). Redis pub/sub delivers at most once
// from there: a message is lost if Redis stops before writing it to the subscriber, if the
// subscriber's connection drops, or if Redis disconnects a subscriber that fell behind
// (client-output-buffer-limit pubsub, 32 MiB by default: raise it for the bus). In each case the
// receiving replica reconnects and is told through OnReconnect.
//
// # Subscriptions
//
// The subscription connection is the bus's own RESP2 connection rather than go-redis' PubSub,
// because the bus must own its life: go-redis reconnects a PubSub silently (the broker would miss
// that messages were lost and not resync its route table) and hands payloads over as strings.
// Here every read has a deadline of Options.HealthTimeout while a PING goes out every
// Options.HealthInterval, so a dead or half-open link is noticed within HealthTimeout; the
// connection is then dropped and made again with capped exponential backoff and jitter,
// re-subscribed, and Options.OnReconnect is called. Status and Options.OnStatus report the state.
//
// On a Redis Cluster (Options.Cluster) the bus uses sharded pub/sub: each replica's channels
// carry the replica id as a hash tag, so they live on one node and different replicas' traffic
// spreads over the masters. Channels in different slots need separate subscription connections;
// the bus opens one per slot it needs (the replica's own channels, heartbeats, route changes).
package bus
