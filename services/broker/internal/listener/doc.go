// Package listener owns the transports the broker serves MQTT on besides plain TCP: TLS with
// certificates that are reloaded while the broker runs, and MQTT over WebSocket (ws:// and wss://).
//
// Everything here ends in a net.Listener whose connections carry the MQTT byte stream, so the
// broker's Serve(ln) needs no knowledge of the transport:
//
//	certs, err := listener.LoadCerts(listener.TLSOptions{CertFile: "tls.crt", KeyFile: "tls.key"})
//	go certs.Watch(ctx, 30*time.Second, func(err error) { /* log the reload */ })
//	tcp, _ := net.Listen("tcp", ":8883")
//	go srv.Serve(listener.TLS(tcp, certs))
//	ws, _ := listener.ListenWebSocket(listener.WebSocketOptions{Addr: ":8084", TLS: certs})
//	go srv.Serve(ws)
//
// No handshake happens inside Accept: a TLS connection shakes hands on its first Read, in the
// connection's own goroutine, under the read deadline the broker sets before reading CONNECT;
// a WebSocket connection is upgraded in the HTTP server's goroutine for it, under
// WebSocketOptions.HandshakeTimeout, before Accept ever sees it.
package listener
