package test

// Client libraries the end-to-end tests of the other protocols use; listed
// here so that `go mod tidy` keeps them while those tests are being written.
import (
	_ "github.com/coder/websocket"
	_ "github.com/eclipse/paho.golang/paho"
	_ "github.com/eclipse/paho.mqtt.golang"
	_ "github.com/go-stomp/stomp/v3"
)
