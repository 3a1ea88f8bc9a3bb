package listener

import (
	"bufio"
	"io"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
)

// A real MQTT client library, Eclipse Paho, talks over ws:// to a fake broker that reads its
// packets with the project's codec: CONNECT in, CONNACK out, PUBLISH in, DISCONNECT in.
func TestPahoOverWebSocket(t *testing.T) {
	ln, url := startWS(t, WebSocketOptions{})

	type result struct {
		connect *mqtt.Connect
		publish *mqtt.Publish
		last    mqtt.Type
		err     error
	}
	done := make(chan result, 1)
	go func() {
		var res result
		defer func() { done <- res }()
		c, err := ln.Accept()
		if err != nil {
			res.err = err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		read := func() (mqtt.FixedHeader, []byte, error) {
			fh, err := mqtt.ReadFixedHeader(br, 1<<20)
			if err != nil {
				return fh, nil, err
			}
			body := make([]byte, fh.Remaining)
			_, err = io.ReadFull(br, body)
			return fh, body, err
		}
		fh, body, err := read()
		if err == nil && fh.Type == mqtt.CONNECT {
			res.connect = &mqtt.Connect{}
			err = res.connect.Decode(fh.Flags, body, 0)
		}
		if err != nil {
			res.err = err
			return
		}
		if _, err := c.Write([]byte{0x20, 2, 0, 0}); err != nil { // CONNACK, accepted
			res.err = err
			return
		}
		if fh, body, err = read(); err == nil {
			res.publish = &mqtt.Publish{}
			err = res.publish.Decode(fh.Flags, body, res.connect.Version)
		}
		if err != nil {
			res.err = err
			return
		}
		fh, _, res.err = read()
		res.last = fh.Type
	}()

	opts := paho.NewClientOptions().AddBroker(url).SetClientID("paho-ws").
		SetConnectTimeout(5 * time.Second).SetAutoReconnect(false).SetConnectRetry(false)
	cli := paho.NewClient(opts)
	if tok := cli.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect over ws: %v", tok.Error())
	}
	if tok := cli.Publish("sensors/1", 0, false, "21.5"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	cli.Disconnect(250)

	res := <-done
	if res.err != nil {
		t.Fatalf("fake broker: %v", res.err)
	}
	if res.connect.ClientID != "paho-ws" || res.connect.Version != mqtt.V311 {
		t.Fatalf("CONNECT %+v", res.connect)
	}
	if res.publish.Topic != "sensors/1" || string(res.publish.Payload) != "21.5" {
		t.Fatalf("PUBLISH %+v", res.publish)
	}
	if res.last != mqtt.DISCONNECT {
		t.Fatalf("last packet %v, want DISCONNECT", res.last)
	}
}
