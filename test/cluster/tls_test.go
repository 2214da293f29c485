package cluster_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestClusterMutualTLS: three real nodes with --cluster-tls-cert, -key and
// -ca form the cluster (through the harness's proxies, which pass the TLS
// bytes on) and replicate a declaration.
func TestClusterMutualTLS(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// One self-signed certificate is each node's and the cluster's CA.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "herald-cluster"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	cert, keyFile := filepath.Join(dir, "cluster.pem"), filepath.Join(dir, "cluster-key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, 3, "--cluster-tls-cert", cert, "--cluster-tls-key", keyFile, "--cluster-tls-ca", cert)
	if err := h.nodes[1].declareQueue("over-tls", nil); err != nil {
		t.Fatal(err)
	}
	for _, nd := range h.nodes {
		eventually(t, 5*time.Second, nd.name+" has the queue", func() error { return nd.hasQueue("over-tls") })
	}
}
