package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSFiles are the PEM files of mutual TLS on the cluster port
// (--cluster-tls-cert, --cluster-tls-key, --cluster-tls-ca): each node
// presents its certificate in both directions and accepts a peer only if
// the cluster's CA signed the peer's. Any certificate that CA signed is a
// member, whatever its names (nodes dial each other by address): give the
// cluster a CA of its own.
type TLSFiles struct {
	Cert, Key, CA string
}

// enabled reports whether any file is set (then all three must be).
func (f TLSFiles) enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// clusterTLS is the cluster port's TLS: the listener's and the dialer's.
type clusterTLS struct {
	server, client *tls.Config
}

// loadTLS reads f; nil, nil when TLS is off.
func loadTLS(f TLSFiles) (*clusterTLS, error) {
	if !f.enabled() {
		return nil, nil
	}
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, errors.New("cluster TLS needs --cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca together")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("cluster TLS: cannot load --cluster-tls-cert %s with --cluster-tls-key %s: %w", f.Cert, f.Key, err)
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("cluster TLS: cannot read --cluster-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster TLS: --cluster-tls-ca %s holds no PEM certificate", f.CA)
	}
	verify := verifyMember(pool)
	return &clusterTLS{
		server: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
			ClientAuth: tls.RequireAnyClientCert, VerifyConnection: verify},
		// The chain is checked by verifyMember, against the cluster's CA
		// only and without a host name (peers are dialed by address);
		// InsecureSkipVerify turns off just the default check that would
		// also demand the dialed address among the certificate's names.
		client: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
			InsecureSkipVerify: true, VerifyConnection: verify},
	}, nil
}

// verifyMember accepts a peer whose certificate chains to pool.
func verifyMember(pool *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the peer presented no certificate (cluster TLS is mutual)")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		opts := x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			return fmt.Errorf("the peer's certificate (%s) is not signed by this node's --cluster-tls-ca: %w", cs.PeerCertificates[0].Subject, err)
		}
		return nil
	}
}
