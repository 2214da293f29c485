package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/broker"
)

// testCA is a certificate authority for one test's cluster.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // its certificate, PEM
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, name+"-ca.pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue makes a node certificate the CA signed (server use only, and no
// names the nodes dial: membership is the CA's signature).
func (ca *testCA) issue(t *testing.T, dir, name string) TLSFiles {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	f := TLSFiles{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem"), CA: ca.file}
	writePEM(t, f.Cert, "CERTIFICATE", der)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	writePEM(t, f.Key, "PRIVATE KEY", kder)
	return f
}

// Three nodes on mutual TLS form the cluster and replicate; a stranger
// (a certificate of another CA, or no TLS) gets nothing from the port.
func TestClusterOverMutualTLS(t *testing.T) {
	var ca *testCA
	ms := startThree(t, fast, func(dir string, c *Config) {
		if ca == nil {
			ca = newTestCA(t, dir, "cluster")
		}
		c.TLS = ca.issue(t, dir, c.NodeName)
	})
	dir := t.TempDir()
	addrs := []string{ms[0].node.cfg.Addr}
	var follower *member
	for _, m := range ms {
		if _, id := m.node.raft.LeaderWithID(); string(id) != m.node.Name() {
			follower = m
			break
		}
	}
	// Forwarded to the leader and replicated, all over TLS.
	if _, err := follower.broker.VHost(broker.DefaultVHost).DeclareQueue("orders", broker.QueueOptions{Durable: true}); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		waitFor(t, "the queue on "+m.node.Name(), func() bool {
			_, err := m.broker.VHost(broker.DefaultVHost).Queue("orders")
			return err == nil
		})
	}
	for _, st := range ms[0].node.Status(5 * time.Second) {
		if !st.Running {
			t.Errorf("status over TLS: %+v", st)
		}
	}

	// A node of another cluster (another CA) is refused both ways.
	other := newTestCA(t, dir, "other")
	strangerTLS, err := loadTLS(other.issue(t, dir, "stranger"))
	if err != nil {
		t.Fatal(err)
	}
	stranger := &mux{tls: strangerTLS}
	if resp, err := stranger.call(addrs[0], request{Op: opHello}, 2*time.Second); err == nil {
		t.Fatalf("a certificate of another CA was answered: %+v", resp)
	}
	// A member's own certificate but the other CA to check the node: the
	// dialer refuses the node.
	mixed, err := loadTLS(TLSFiles{Cert: ca.issue(t, dir, "d").Cert, Key: filepath.Join(dir, "d-key.pem"), CA: other.file})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&mux{tls: mixed}).call(addrs[0], request{Op: opHello}, 2*time.Second); err == nil ||
		!strings.Contains(err.Error(), "not signed by this node's --cluster-tls-ca") {
		t.Fatalf("a node whose certificate the dialer's CA did not sign: %v", err)
	}
	// Plain TCP to the TLS port.
	c, err := net.Dial("tcp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write(append([]byte{kindRPC}, `{"op":"hello"}`+"\n"...))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	if n, err := c.Read(buf); err == nil && strings.Contains(string(buf[:n]), "name") {
		t.Fatalf("plain TCP was answered: %q", buf[:n])
	}
	c.Close()
	// Still a cluster.
	if _, err := ms[0].broker.VHost(broker.DefaultVHost).DeclareQueue("after", broker.QueueOptions{Durable: true}); err != nil {
		t.Fatal(err)
	}
}

func TestClusterTLSFilesErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "cluster")
	good := ca.issue(t, dir, "a")
	notPEM := filepath.Join(dir, "empty.pem")
	_ = os.WriteFile(notPEM, []byte("nothing here"), 0o600)
	for _, c := range []struct {
		files TLSFiles
		want  string
	}{
		{TLSFiles{Cert: good.Cert}, "together"},
		{TLSFiles{Cert: good.Cert, Key: good.Key}, "together"},
		{TLSFiles{Cert: good.Cert, Key: good.Cert, CA: good.CA}, "cannot load --cluster-tls-cert"},
		{TLSFiles{Cert: good.Cert, Key: good.Key, CA: notPEM}, "holds no PEM certificate"},
		{TLSFiles{Cert: good.Cert, Key: good.Key, CA: filepath.Join(dir, "missing.pem")}, "cannot read --cluster-tls-ca"},
	} {
		if _, err := loadTLS(c.files); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.files, err, c.want)
		}
	}
	if tl, err := loadTLS(TLSFiles{}); tl != nil || err != nil {
		t.Errorf("no files: %v %v, want TLS off", tl, err)
	}
}
