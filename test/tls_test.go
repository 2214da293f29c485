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
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "herald-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLSListeners: AMQPS, MQTTS and HTTPS with a certificate generated
// here; a message crosses from MQTTS to AMQPS.
func TestTLSListeners(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := selfSigned(t)
	s := startServer(t, func(c *app.Config) {
		c.AMQPSAddr, c.MQTTSAddr, c.HTTPSAddr, c.STOMPSAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		c.HTTPAddr = "127.0.0.1:0"
		c.TLS = app.TLSConfig{CertFile: certFile, KeyFile: keyFile}
	})
	tc := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	conn, err := amqp.DialTLS(fmt.Sprintf("amqps://guest:guest@%s/", s.Addr("amqps")), tc)
	if err != nil {
		t.Fatalf("amqps: %v", err)
	}
	defer conn.Close()
	ch := mustChannel(t, conn)
	q := tempQueue(t, ch)
	if err := ch.QueueBind(q, "secure.#", "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	in := mustConsume(t, ch, q, "", true)

	opts := mqtt.NewClientOptions().AddBroker("ssl://" + s.Addr("mqtts").String()).SetClientID("tls").
		SetUsername("guest").SetPassword("guest").SetTLSConfig(tc)
	mc := mqtt.NewClient(opts)
	if tok := mc.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtts connect: %v", tok.Error())
	}
	defer mc.Disconnect(100)
	if tok := mc.Publish("secure/hello", 1, false, "over tls"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtts publish: %v", tok.Error())
	}
	if d := recv(t, in); string(d.Body) != "over tls" {
		t.Errorf("got %q", d.Body)
	}

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	req, _ := http.NewRequest("GET", fmt.Sprintf("https://%s/api/overview", s.Addr("https")), nil)
	req.SetBasicAuth("guest", "guest")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("https: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("https /api/overview: %s", resp.Status)
	}
	// A client that does not trust the certificate is refused.
	if _, err := amqp.DialTLS(fmt.Sprintf("amqps://guest:guest@%s/", s.Addr("amqps")), &tls.Config{ServerName: "127.0.0.1"}); err == nil {
		t.Error("an untrusting client connected")
	}
	assertAlive(t, conn)
}

func TestTLSWithoutCertificateFailsClearly(t *testing.T) {
	t.Parallel()
	srv, err := app.New(app.Config{AMQPSAddr: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Start()
	stopServer(t, srv)
	if err == nil || !contains(err.Error(), "--tls-cert") {
		t.Fatalf("Start without a certificate: %v", err)
	}
}
