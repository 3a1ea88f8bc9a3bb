package bus_test

import (
	"context"
	"log"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
)

// A replica joins the bus, routes one message to another replica and handles what it receives.
func Example() {
	ctx := context.Background()
	b, err := bus.New(ctx, bus.Options{
		Addrs:     []string{"127.0.0.1:6379"},
		ReplicaID: "broker-0",
		OnBatch: func(batch []byte) {
			msgs, err := bus.DecodeBatch(batch) // msgs alias batch, which is theirs to keep
			if err != nil {
				log.Print(err)
				return
			}
			for i := range msgs {
				_ = msgs[i] // hand over to the router: msgs[i].Plain, msgs[i].Groups
			}
		},
		OnReconnect: func() { /* messages may have been lost: resync the route table */ },
		OnStatus:    func(s bus.Status) { log.Printf("redis connected=%v", s.Connected) },
	})
	if err != nil {
		log.Fatal(err) // only invalid options fail; Redis may be down
	}
	defer b.Close()

	m := &bus.Message{
		ID: bus.NewMessageID(), Origin: "broker-0", ClientID: "sensor-17", Topic: "site/1/temp",
		Payload: []byte("21.5"), QoS: 1, Created: time.Now().UnixNano(), Plain: true,
	}
	b.Publish("broker-1", m, func(err error) {
		// nil: Redis took it and broker-1 is subscribed; send PUBACK now.
	})
}
