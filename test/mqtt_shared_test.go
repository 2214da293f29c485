package test

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// TestMQTTSharedSubscriptionKeepsMessagesForOfflineMembers: a persistent
// session's $share group keeps what is published while every member is
// away, across a restart; the group's queue goes once its last session
// unsubscribes.
func TestMQTTSharedSubscriptionKeepsMessagesForOfflineMembers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := mqttServer(t, dir)
	addr := srv.MQTTAddr().String()
	expiry := uint32(3600)
	connect := func(addr string, clean bool) (*mqttV5Client, *paho.Connack) {
		return dialMQTTV5(t, addr, &paho.Connect{ClientID: "worker-1", CleanStart: clean,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	}
	w, _ := connect(addr, true)
	w.subscribe(t, 5, paho.SubscribeOptions{Topic: "$share/workers/jobs/#", QoS: 1})
	w.Disconnect(&paho.Disconnect{})

	p, _ := dialMQTTV5(t, addr, &paho.Connect{ClientID: "producer", CleanStart: true})
	for _, body := range []string{"job-1", "job-2"} {
		p.publish(t, &paho.Publish{Topic: "jobs/a", QoS: 1, Payload: []byte(body)})
	}
	p.Disconnect(&paho.Disconnect{})
	srv.stop()

	srv = mqttServer(t, dir)
	addr = srv.MQTTAddr().String()
	w, ca := connect(addr, false)
	if !ca.SessionPresent {
		t.Fatal("session present = false after a restart")
	}
	for _, want := range []string{"job-1", "job-2"} {
		if m := w.next(t); m.Topic != "jobs/a" || string(m.Payload) != want || mqttSubID(m) != 5 {
			t.Fatalf("got %q on %q (subscription id %d), want %q published while the group was offline", m.Payload, m.Topic, mqttSubID(m), want)
		}
	}

	const queue = "mqtt-shared-/-workers-jobs.#"
	if _, err := srv.Broker().VHost("/").Queue(queue); err != nil {
		t.Fatalf("the group's queue: %v", err)
	}
	if _, err := w.Unsubscribe(mqttCtx(t), &paho.Unsubscribe{Topics: []string{"$share/workers/jobs/#"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Broker().VHost("/").Queue(queue); err == nil {
		t.Fatal("the group's queue outlived its last subscription")
	}
}
