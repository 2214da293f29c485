package mqtt

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/kit"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// handshake reads CONNECT and answers CONNACK; it reports whether the
// session is established.
func (c *conn) handshake() bool {
	c.nc.SetReadDeadline(time.Now().Add(c.h.cfg.ConnectTimeout))
	p, err := c.r.Read(packet.V5, c.h.cfg.MaxPacketSize)
	cp, isConnect := p.(*packet.Connect)
	if err != nil {
		var pe *packet.Error
		if isConnect && errors.As(err, &pe) && pe.Code == packet.UnsupportedProtocolVersion {
			// [MQTT-3.1.2-2]: v3 answers 0x01 to an unknown level of "MQTT";
			// a wrong protocol name is closed without CONNACK (v3) or with
			// 0x84 (v5, where the level says the client speaks v5).
			switch {
			case cp.ProtocolLevel == packet.V5:
				c.writeDirect(&packet.Connack{ReasonCode: packet.UnsupportedProtocolVersion}, packet.V5)
			case cp.ProtocolName == "MQTT":
				c.writeDirect(&packet.Connack{ReasonCode: packet.ReasonCode(packet.V3UnacceptableProtocolVersion)}, packet.V311)
			}
		} else if isConnect && cp.ProtocolLevel == packet.V5 && errors.As(err, &pe) {
			c.writeDirect(&packet.Connack{ReasonCode: pe.Code, Properties: packet.Properties{ReasonString: pe.Text}}, packet.V5)
		}
		c.logger().Debug("mqtt connect failed", "err", err)
		if errors.As(err, &pe) {
			c.h.cfg.Counters.ProtocolError(c.label())
		}
		return false
	}
	if !isConnect {
		c.logger().Debug("mqtt first packet is not CONNECT", "type", p.Type()) // [MQTT-3.1.0-1]
		c.h.cfg.Counters.ProtocolError(c.label())
		return false
	}
	c.version = cp.ProtocolLevel
	// authErr is why the login failed, for the refusal's log line (a
	// local: a field would cost every connection 16 bytes).
	var authErr error
	fail := func(code packet.ReasonCode, why string) bool {
		ack := &packet.Connack{ReasonCode: code}
		if c.version == packet.V5 {
			ack.Properties.ReasonString = why
		} else {
			ack.ReasonCode = packet.ReasonCode(packet.V3ConnackCode(code))
		}
		c.writeDirect(ack, c.version)
		log := c.logger()
		if authErr != nil {
			log = log.With("err", authErr)
		}
		log.Info("mqtt connection refused", "reason", why, "code", byte(code))
		return false
	}
	authFail := func(code packet.ReasonCode, why string) bool {
		c.h.cfg.Counters.AuthFailed(c.label())
		return fail(code, why)
	}
	if cp.Properties.AuthMethod != "" {
		return fail(packet.BadAuthenticationMethod, "enhanced authentication is not supported")
	}
	// Vhost and user as RabbitMQ's plugin: "vhost:user", default vhost "/".
	vhostName, user := broker.DefaultVHost, cp.Username
	if i := strings.LastIndexByte(user, ':'); i >= 0 {
		vhostName, user = user[:i], user[i+1:]
	}
	// Over TLS with a verified client certificate, a CONNECT without a
	// user name logs in as the certificate's CN (RabbitMQ's
	// ssl_cert_login), which must be an existing user.
	// Otherwise it logs in as the anonymous user (guest) unless
	// --mqtt-allow-anonymous=false; no password is checked, but the user
	// must exist and a loopback user must connect from localhost, as for
	// AMQP.
	certUser, anonymous := "", false
	if !cp.UsernameFlag {
		switch certUser = kit.VerifiedCertCN(c.nc); {
		case certUser != "":
			user = certUser
		case c.h.cfg.DenyAnonymous:
			return authFail(packet.BadUserNameOrPassword, "user name required (anonymous clients are not allowed)")
		default:
			user, anonymous = c.h.cfg.AnonymousUser, true
		}
	}
	if certUser != "" || anonymous {
		if u, ok := c.h.users.User(user); !ok || (u.LoopbackOnly && !kit.IsLoopback(c.nc.RemoteAddr())) {
			if anonymous {
				return authFail(packet.NotAuthorized, "anonymous login as '"+user+"' is not allowed from this address")
			}
			return authFail(packet.NotAuthorized, "client certificate user '"+user+"' is not allowed")
		}
	} else if login, err := c.h.users.Authenticate(user, string(cp.Password), c.nc.RemoteAddr()); err != nil {
		authErr = err // fail logs the refusal once, with why
		if c.version == packet.V5 {
			return authFail(packet.BadUserNameOrPassword, "bad user name or password")
		}
		// 3.1.1 clients get 0x05 (not authorized), as RabbitMQ answers.
		return authFail(packet.NotAuthorized, "bad user name or password")
	} else {
		user = c.setLogin(login) // a token's user replaces the name sent
	}
	c.vhost = c.h.broker.VHost(vhostName)
	if c.vhost == nil {
		return fail(packet.NotAuthorized, "no vhost "+vhostName)
	}
	c.user = user
	if err := c.checker().CheckVHost(user, vhostName); err != nil {
		return fail(packet.NotAuthorized, err.Error()) // v5 0x87, 3.1.1 0x05
	}
	// Connection limits: v5 0x97 quota exceeded, 3.1.1 0x03 server unavailable.
	release, err := c.h.broker.AdmitConnection(user, vhostName)
	if err != nil {
		var be *broker.Error
		why := err.Error()
		if errors.As(err, &be) {
			why = be.Text
		}
		return fail(packet.QuotaExceeded, why)
	}
	c.admitted = release
	ack := &packet.Connack{}
	c.clientID = cp.ClientID
	if c.clientID == "" {
		// [MQTT-3.1.3-7] an empty id needs a clean session in 3.1.1.
		if c.version != packet.V5 && !cp.CleanStart {
			return fail(packet.ClientIdentifierNotValid, "empty client id needs clean session")
		}
		var b [12]byte
		rand.Read(b[:])
		c.clientID = "herald-" + hex.EncodeToString(b[:])
		ack.Properties.AssignedClientID = c.clientID
	}
	c.key = vhostName + "\x00" + c.clientID
	c.owner = c.h.broker.NewOwner()
	c.will = cp.Will

	// Keep-alive: the server closes after 1.5x without a packet
	// [MQTT-3.1.2-24]; a v5 client can be told a smaller value.
	ka := time.Duration(cp.KeepAlive) * time.Second
	if max := c.h.cfg.MaxKeepAlive; max > 0 && (ka == 0 || ka > max) && c.version == packet.V5 {
		ka = max
		ack.Properties.ServerKeepAlive = packet.Ptr(uint16(max / time.Second))
	}
	c.keepAlive = ka

	inflight := c.h.cfg.V3InFlight
	if c.version == packet.V5 {
		inflight = 65535
		if rm := cp.Properties.ReceiveMaximum; rm > 0 {
			inflight = int(rm)
		}
		c.maxPacket = cp.Properties.MaximumPacketSize
		c.aliasMax = cp.Properties.TopicAliasMaximum
		ack.Properties.ReceiveMaximum = c.h.cfg.ReceiveMaximum
		ack.Properties.TopicAliasMaximum = c.h.cfg.TopicAliasMaximum
		ack.Properties.MaximumPacketSize = uint32(c.h.cfg.MaxPacketSize)
		ack.Properties.RetainAvailable = packet.Ptr[byte](1)
		ack.Properties.SharedSubAvailable = packet.Ptr[byte](1)
		ack.Properties.WildcardSubAvailable = packet.Ptr[byte](1)
		ack.Properties.SubIDAvailable = packet.Ptr[byte](1)
	}
	c.limiter = broker.NewLimiter(inflight)

	// Session lifetime: 3.1.1 clean session=0 keeps it forever; v5 keeps it
	// for the Session Expiry Interval (0 = ends with the connection).
	if c.version == packet.V5 {
		if cp.Properties.SessionExpiry != nil {
			e := *cp.Properties.SessionExpiry
			switch {
			case e == 0xFFFFFFFF:
				c.expiry = -1
			default:
				c.expiry = time.Duration(e) * time.Second
				if m := c.h.cfg.MaxSessionExpiry; m > 0 && c.expiry > m {
					c.expiry = m
					ack.Properties.SessionExpiry = packet.Ptr(uint32(m / time.Second))
				}
			}
		}
		c.persistent = c.expiry != 0
	} else {
		c.persistent = !cp.CleanStart
		c.expiry = -1
	}

	if err := c.allowQueue(c.sessionQueueFor(cp.CleanStart)); err != nil {
		return fail(packet.NotAuthorized, err.Error())
	}
	c.h.register(c)
	present, err := c.openSession(cp.CleanStart)
	if err != nil {
		c.h.unregister(c)
		c.h.broker.ReleaseOwner(c.owner)
		return fail(packet.ServerUnavailable, err.Error())
	}
	ack.SessionPresent = present
	c.nc.SetReadDeadline(time.Time{})
	c.writeDirect(ack, c.version)
	return true
}

// writeDirect writes a packet before the writer goroutine runs (CONNACK).
func (c *conn) writeDirect(p packet.Packet, version byte) {
	c.nc.SetWriteDeadline(time.Now().Add(c.h.cfg.WriteTimeout))
	c.nc.Write(p.Encode(nil, version))
	c.nc.SetWriteDeadline(time.Time{})
}
