package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
	"github.com/heraldmq/herald/internal/auth"
)

// clientCA makes a CA (written to a PEM file for --tls-client-ca) and
// returns a function that issues client certificates with a given CN.
func clientCA(t *testing.T) (caFile string, issue func(cn string) tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "herald test client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, IsCA: true, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	must(t, err)
	caFile = filepath.Join(t.TempDir(), "client-ca.pem")
	must(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600))
	serial := int64(1)
	return caFile, func(cn string) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(t, err)
		serial++
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		must(t, err)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
}

// TestClientCertificateLogin: with --tls-client-ca, AMQP logs in with
// SASL EXTERNAL as the certificate's CN, and MQTT and STOMP clients that
// send no user name are that user too; a CN that is no user is refused.
func TestClientCertificateLogin(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSigned(t)
	caFile, issue := clientCA(t)
	users := auth.NewDefaultUsers()
	users.PutUser("cert-user", "unused-password", nil)
	must(t, users.SetPermissions("cert-user", "/", auth.Permissions{Configure: ".*", Write: ".*", Read: ".*"}))
	s := startServer(t, withUsers(users), func(c *app.Config) {
		c.AMQPSAddr, c.MQTTSAddr, c.STOMPSAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		c.TLS = app.TLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile}
	})
	tlsFor := func(cn string) *tls.Config {
		return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{issue(cn)}}
	}
	amqpsURL := fmt.Sprintf("amqps://%s/", s.Addr("amqps"))

	conn, err := amqp.DialConfig(amqpsURL, amqp.Config{SASL: []amqp.Authentication{&amqp.ExternalAuth{}}, TLSClientConfig: tlsFor("cert-user")})
	must(t, err)
	defer conn.Close()
	ch := mustChannel(t, conn)
	q := tempQueue(t, ch)
	in := mustConsume(t, ch, q, "", true)
	var found bool
	for _, ci := range s.Broker().Connections() {
		found = found || (ci.User == "cert-user" && strings.HasPrefix(ci.Protocol, "AMQP"))
	}
	if !found {
		t.Fatalf("no AMQP connection of cert-user in %+v", s.Broker().Connections())
	}
	// PLAIN still works over the same listener.
	plain, err := amqp.DialConfig(fmt.Sprintf("amqps://guest:guest@%s/", s.Addr("amqps")), amqp.Config{TLSClientConfig: tlsFor("cert-user")})
	must(t, err)
	plain.Close()
	// A certificate whose CN is not a user: refused.
	if c, err := amqp.DialConfig(amqpsURL, amqp.Config{SASL: []amqp.Authentication{&amqp.ExternalAuth{}}, TLSClientConfig: tlsFor("nobody")}); err == nil {
		c.Close()
		t.Fatal("EXTERNAL login of an unknown CN accepted")
	}

	// MQTT without a user name: the CN.
	opts := mqtt.NewClientOptions().AddBroker("ssl://" + s.Addr("mqtts").String()).SetClientID("cert-mqtt").
		SetTLSConfig(tlsFor("cert-user")).SetAutoReconnect(false)
	mc := mqtt.NewClient(opts)
	if tok := mc.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("mqtts connect with a certificate only: %v", tok.Error())
	}
	defer mc.Disconnect(100)
	must(t, ch.QueueBind(q, "cert.#", "amq.topic", false, nil))
	if tok := mc.Publish("cert/mqtt", 1, false, "from mqtt"); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("mqtts publish: %v", tok.Error())
	}
	if d := recv(t, in); string(d.Body) != "from mqtt" || d.UserId != "" && d.UserId != "cert-user" {
		t.Fatalf("got %q", d.Body)
	}
	bad := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("ssl://" + s.Addr("mqtts").String()).SetClientID("cert-bad").
		SetTLSConfig(tlsFor("nobody")).SetAutoReconnect(false))
	if tok := bad.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() == nil {
		bad.Disconnect(0)
		t.Fatal("mqtt login of an unknown CN accepted")
	}

	// STOMP without login: the CN.
	tc, err := tls.Dial("tcp", s.Addr("stomps").String(), tlsFor("cert-user"))
	must(t, err)
	sc, err := stomp.Connect(tc, stomp.ConnOpt.Host("/"))
	must(t, err)
	must(t, sc.Send("/topic/cert.stomp", "text/plain", []byte("from stomp")))
	if d := recv(t, in); string(d.Body) != "from stomp" {
		t.Fatalf("got %q", d.Body)
	}
	must(t, sc.Disconnect())
	tc.Close()
	found = false
	for _, ci := range s.Broker().Connections() {
		found = found || (ci.User == "cert-user" && strings.HasPrefix(ci.Protocol, "MQTT"))
	}
	if !found {
		t.Fatalf("no MQTT connection of cert-user in %+v", s.Broker().Connections())
	}
}
