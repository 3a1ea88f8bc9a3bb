module github.com/mcloudtt/mcloudtt/services/broker

go 1.25.0

require (
	github.com/eclipse/paho.golang v0.23.0
	github.com/eclipse/paho.mqtt.golang v1.5.1
	github.com/kelseyhightower/envconfig v1.4.0
	github.com/mcloudtt/mcloudtt/pkg v0.0.0
	github.com/rs/zerolog v1.35.1
)

require (
	github.com/gorilla/websocket v1.5.3 // indirect
	github.com/mattn/go-colorable v0.1.14 // indirect
	github.com/mattn/go-isatty v0.0.20 // indirect
	golang.org/x/net v0.44.0 // indirect
	golang.org/x/sync v0.17.0 // indirect
	golang.org/x/sys v0.36.0 // indirect
)

replace github.com/mcloudtt/mcloudtt/pkg => ../../pkg
