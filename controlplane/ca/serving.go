package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Serving is the control plane's own certificate, issued by the CA for a
// set of names and addresses and renewed (with a new key) once two thirds of
// its lifetime passed: GetCertificate hands the current one to every TLS
// handshake. It is safe for concurrent use and starts no goroutines.
type Serving struct {
	ca    *CA
	names []string
	ips   []net.IP
	ttl   time.Duration

	mu       sync.Mutex
	cur      *tls.Certificate
	renewAt  time.Time
	notAfter time.Time
}

// Serving builds the serving certificate for the DNS names and IP
// addresses given (at least one); ttl zero: DefaultServingTTL. The first
// certificate is issued at once.
func (c *CA) Serving(names []string, ips []netip.Addr, ttl time.Duration) (*Serving, error) {
	if ttl == 0 {
		ttl = DefaultServingTTL
	}
	if ttl < MinTTL {
		return nil, fmt.Errorf("ca: serving certificate lifetime %v is shorter than %v", ttl, MinTTL)
	}
	if len(names) == 0 && len(ips) == 0 {
		return nil, fmt.Errorf("ca: serving certificate: no name or address")
	}
	s := &Serving{ca: c, names: append([]string(nil), names...), ttl: ttl}
	for _, ip := range ips {
		s.ips = append(s.ips, net.IP(ip.Unmap().AsSlice()))
	}
	if _, err := s.current(); err != nil {
		return nil, err
	}
	return s, nil
}

// GetCertificate is tls.Config.GetCertificate: the current certificate,
// renewed first when due.
func (s *Serving) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.current()
}

// NotAfter is when the current certificate expires.
func (s *Serving) NotAfter() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notAfter
}

func (s *Serving) current() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.ca.now()
	if s.cur != nil && now.Before(s.renewAt) {
		return s.cur, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: serving key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	notAfter := now.Add(s.ttl)
	if notAfter.After(s.ca.cert.NotAfter) {
		notAfter = s.ca.cert.NotAfter
	}
	cn := "bulkhead-controlplane"
	if len(s.names) > 0 {
		cn = s.names[0]
	}
	cert, _, err := s.ca.issue(&x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"Bulkhead"}, CommonName: cn},
		DNSNames:     s.names,
		IPAddresses:  s.ips,
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, key.Public())
	if err != nil {
		if s.cur != nil && now.Before(s.notAfter) {
			return s.cur, nil // keep serving the old one while it is valid
		}
		return nil, fmt.Errorf("ca: serving certificate: %w", err)
	}
	s.cur = &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	s.notAfter = cert.NotAfter
	s.renewAt = now.Add(notAfter.Sub(now) * 2 / 3)
	return s.cur, nil
}

// ServerTLS is the gRPC server's TLS configuration: the serving certificate,
// and client certificates verified against the CA when given
// (tls.VerifyClientCertIfGiven: Issue is called without one; the
// interceptors require one everywhere else).
func (c *CA) ServerTLS(s *Serving) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.GetCertificate,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      c.pool,
	}
}

// ListenNames are the names and addresses a serving certificate for a
// listener on addr needs: its IP, or every local interface address when it
// listens on all of them (and "localhost"); plus extra names (DNS names or
// IP literals).
func ListenNames(addr string, extra []string) (names []string, ips []netip.Addr, err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: listen address %q: %w", addr, err)
	}
	seen := map[netip.Addr]bool{}
	add := func(ip netip.Addr) {
		ip = ip.Unmap()
		if !seen[ip] {
			seen[ip] = true
			ips = append(ips, ip)
		}
	}
	ip, perr := netip.ParseAddr(host)
	switch {
	case host == "" || perr == nil && ip.IsUnspecified():
		ifAddrs, err := net.InterfaceAddrs()
		if err != nil {
			return nil, nil, fmt.Errorf("ca: interface addresses: %w", err)
		}
		for _, a := range ifAddrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				add(p.Addr())
			}
		}
		names = append(names, "localhost")
	case perr == nil:
		add(ip)
	default:
		names = append(names, host)
	}
	for _, e := range extra {
		if ip, err := netip.ParseAddr(e); err == nil {
			add(ip)
			continue
		}
		if !validLabels(e, ".") {
			return nil, nil, fmt.Errorf("ca: server name %q: want a DNS name or an IP address", e)
		}
		names = append(names, e)
	}
	return names, ips, nil
}
