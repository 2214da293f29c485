package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// conn is one AMQP connection with a single channel, plus the raw socket so
// that a connection stuck in a blocked write (broker flow control) can be
// torn down without waiting for the AMQP close handshake.
type conn struct {
	name string
	c    *amqp.Connection
	ch   *amqp.Channel
	raw  net.Conn

	chClosed   chan *amqp.Error // channel close notification
	connClosed chan *amqp.Error // connection close notification
	closed     bool             // close called (controller goroutine only)
	mu         sync.Mutex       // serialises admin calls (see adminCall)
}

// dial opens a connection named for the broker's management UI and a channel
// on it.
func dial(url, name string) (*conn, error) { return dialWith(url, name, false) }

// dialWith is dial; coalesce puts a coalescingConn between the client and
// the socket.
func dialWith(url, name string, coalesce bool) (*conn, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("herald-bench " + name)
	cn := &conn{name: name}
	base := amqp.DefaultDial(setupConnectTimeout)
	var wrapped *coalescingConn
	c, err := amqp.DialConfig(url, amqp.Config{
		Properties: props,
		Dial: func(network, addr string) (net.Conn, error) {
			raw, err := base(network, addr)
			cn.raw = raw
			if err != nil || !coalesce {
				return raw, err
			}
			wrapped = newCoalescingConn(raw)
			return wrapped, nil
		},
	})
	if err != nil {
		if wrapped != nil {
			wrapped.Close()
		}
		if cn.raw != nil {
			cn.raw.Close()
		}
		return nil, describeDialError(url, err)
	}
	cn.c = c
	ch, err := c.Channel()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: cannot open a channel: %w", name, err)
	}
	cn.ch = ch
	cn.connClosed = c.NotifyClose(make(chan *amqp.Error, 1))
	cn.chClosed = ch.NotifyClose(make(chan *amqp.Error, 1))
	return cn, nil
}

// close closes the connection gracefully, giving up after a short deadline.
func (cn *conn) close() {
	if cn == nil || cn.c == nil || cn.closed {
		return
	}
	cn.closed = true
	if err := cn.c.CloseDeadline(time.Now().Add(connectionCloseWaitFor)); err != nil && cn.raw != nil {
		cn.raw.Close()
	}
}

// kill drops the TCP connection without the AMQP handshake.
func (cn *conn) kill() {
	if cn != nil && cn.raw != nil {
		cn.raw.Close()
	}
}

// reason returns the broker's (or the library's) explanation for a closed
// channel or connection, waiting briefly for the close notification, or err
// when there is none.
func (cn *conn) reason(err error) error {
	t := time.NewTimer(200 * time.Millisecond)
	defer t.Stop()
	select {
	case e, ok := <-cn.chClosed:
		if ok && e != nil {
			return e
		}
	case e, ok := <-cn.connClosed:
		if ok && e != nil {
			return e
		}
	case <-t.C:
	}
	if err == nil {
		err = errors.New("closed without an error")
	}
	return err
}

// describeDialError turns a connection failure into a message that says what
// went wrong and what to do about it.
func describeDialError(url string, err error) error {
	shown := redactURL(url)
	var amqpErr *amqp.Error
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot connect to %s: connection refused — is the broker running? (start one with `herald serve`, or pass --url)", shown)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("cannot connect to %s: %v — check the host name in --url", shown, err)
	case errors.Is(err, amqp.ErrCredentials), errors.Is(err, amqp.ErrSASL):
		return fmt.Errorf("cannot log in to %s: %v — check the user and password in --url (note RabbitMQ only lets guest/guest in from localhost)", shown, err)
	case errors.Is(err, amqp.ErrVhost):
		return fmt.Errorf("cannot open the virtual host of %s: %v — check the vhost at the end of --url (\"/\" is the default vhost, written as a trailing slash) and the user's permissions", shown, err)
	case errors.As(err, &amqpErr) && amqpErr.Code == amqp.AccessRefused:
		return fmt.Errorf("cannot log in to %s: %v — check the user and password in --url", shown, err)
	case errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotAllowed:
		return fmt.Errorf("broker refused the connection to %s: %v — check the vhost in --url, the user's permissions and connection limits", shown, err)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("cannot connect to %s: timed out — check the host and port in --url and any firewall in between", shown)
	case errors.Is(err, amqp.ErrClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF),
		errors.As(err, &amqpErr) && amqpErr.Code == amqp.FrameError:
		return fmt.Errorf("cannot connect to %s: the server closed the connection during the AMQP handshake (%v) — is it an AMQP 0-9-1 broker, and is this the AMQP port (5672; 5671 for amqps)?", shown, err)
	}
	return fmt.Errorf("cannot connect to %s: %v", shown, err)
}

// brokerError decorates an error returned by a channel operation.
func brokerError(who, op string, err error) error {
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotImplemented {
		return fmt.Errorf("%s: %s: the broker does not implement this (%v)", who, op, err)
	}
	return fmt.Errorf("%s: %s: %w", who, op, err)
}
