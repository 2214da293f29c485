package broker

import "time"

// Table is a string-keyed set of typed values: AMQP field tables, MQTT user
// properties and STOMP headers all map onto it. Values use the Go types of
// the AMQP codec (bool, int8..int64, uint8..uint32, float32/64, string,
// []byte, []any, time.Time, Table, nil).
type Table = map[string]any

// Properties are the message properties every protocol can carry.
type Properties struct {
	ContentType     string
	ContentEncoding string
	Headers         Table
	DeliveryMode    uint8 // 2 = persistent
	Priority        uint8
	CorrelationID   string
	ReplyTo         string
	Expiration      string
	MessageID       string
	Timestamp       time.Time
	Type            string
	UserID          string
	AppID           string
	ClusterID       string
}

// Message is one published message. It is immutable once published: the
// same value is shared by every queue it is routed to.
type Message struct {
	Exchange   string
	RoutingKey string
	Properties Properties
	Body       []byte

	storeID uint64 // the message's id in the log; 0 = not stored
}

// Persistent reports whether the publisher asked for the message to survive
// a restart (delivery mode 2).
func (m *Message) Persistent() bool { return m.Properties.DeliveryMode == 2 }

// Delivery is a message handed to a consumer or returned by Get.
type Delivery struct {
	Message     *Message
	Queue       *Queue
	ID          uint64 // queue-local; pass to Queue.Ack/Requeue/Discard
	Redelivered bool
	Consumer    *Consumer // nil for Get
	// Remaining is the number of ready messages left in the queue after this
	// one (basic.get-ok's message-count); only set for Get.
	Remaining int
	// DeliveryCount is how many times the message was delivered before
	// (RabbitMQ's x-delivery-count header, added on redelivery).
	DeliveryCount uint32
}
