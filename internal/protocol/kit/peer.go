package kit

import (
	"crypto/tls"
	"net"
)

// VerifiedCertCN is the Subject CN of a TLS client's certificate when it
// verified against the server's client CA (RabbitMQ's
// ssl_cert_login_from = common_name); "" otherwise, or when nc is not TLS.
// Call it after the TLS handshake (once the first bytes were read).
func VerifiedCertCN(nc net.Conn) string {
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return ""
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return ""
	}
	return st.PeerCertificates[0].Subject.CommonName
}

// IsLoopback reports whether a peer address is a loopback one (the only
// place loopback-only users such as guest may log in from).
func IsLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
