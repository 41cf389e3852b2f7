package selftls

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// The keys of the serving Secret: cert-manager's layout (ca.crt, tls.crt,
// tls.key) plus the CA's key, so one Secret serves every TLS mode.
const (
	SecretCACert = "ca.crt"
	SecretCAKey  = "ca.key"
	SecretCert   = "tls.crt"
	SecretKey    = "tls.key"
)

// clockSkew backdates every certificate so that an API server whose clock
// runs a little behind still accepts it.
const clockSkew = 5 * time.Minute

// backdate is clockSkew, or a tenth of a short validity (tests use
// lifetimes of seconds), so the renewal point stays two thirds into the
// life that lies ahead.
func backdate(validity time.Duration) time.Duration { return min(clockSkew, validity/10) }

// keyPair is a parsed certificate with its PEM and, for a CA, its key.
type keyPair struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer
	KeyPEM  []byte
}

// renewAt is when a certificate is renewed: two thirds into its life, as
// cert-manager does by default, so a failed renewal has a third of the
// lifetime to be noticed and fixed.
func renewAt(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(life * 2 / 3)
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// issueCert creates a key and a certificate from tmpl (serial and
// validity filled in here) signed by parent, or self-signed when parent is
// nil.
func issueCert(tmpl *x509.Certificate, parent *keyPair, now time.Time, validity time.Duration) (*keyPair, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, err
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, err
	}
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-backdate(validity)), now.Add(validity)
	signerCert, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		// Never beyond the CA's own life.
		if tmpl.NotAfter.After(parent.Cert.NotAfter) {
			tmpl.NotAfter = parent.Cert.NotAfter
		}
		signerCert, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &keyPair{Cert: cert, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Key: key, KeyPEM: keyPEM}, nil
}

// newCA creates a self-signed CA valid from now (less backdate) for
// validity.
func newCA(name string, now time.Time, validity time.Duration) (*keyPair, error) {
	return issueCert(&x509.Certificate{
		Subject:               pkix.Name{CommonName: fmt.Sprintf("%s-ca@%d", name, now.Unix())},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, nil, now, validity)
}

// newServing creates a serving certificate for names (DNS names or IPs)
// signed by ca.
func newServing(ca *keyPair, names []string, now time.Time, validity time.Duration) (*keyPair, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return issueCert(tmpl, ca, now, validity)
}

// parseCerts parses a PEM bundle; anything but CERTIFICATE blocks, or no
// block at all, is an error.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := bytes.TrimSpace(data)
	for len(rest) > 0 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("not PEM")
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
		rest = bytes.TrimSpace(rest)
	}
	if len(out) == 0 {
		return nil, errors.New("empty")
	}
	return out, nil
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// loadCA reads the current CA (the first certificate of ca.crt) and its key
// from a Secret's data. It returns the CA and the other, older CAs of the
// bundle, or a problem: the CA is missing, unparseable, not a CA, its key
// does not match, or it is past its renewal point.
func loadCA(data map[string][]byte, now time.Time) (ca *keyPair, older []*x509.Certificate, problem string) {
	if len(data[SecretCACert]) == 0 || len(data[SecretCAKey]) == 0 {
		return nil, nil, "missing"
	}
	certs, err := parseCerts(data[SecretCACert])
	if err != nil {
		return nil, nil, "unparseable " + SecretCACert + ": " + err.Error()
	}
	pair, err := tls.X509KeyPair(encodeCerts(certs[:1]), data[SecretCAKey])
	if err != nil {
		return nil, certs, "unusable " + SecretCAKey + ": " + err.Error()
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok || !certs[0].IsCA {
		return nil, certs, "not a CA"
	}
	ca = &keyPair{Cert: certs[0], CertPEM: encodeCerts(certs[:1]), Key: signer, KeyPEM: data[SecretCAKey]}
	switch {
	case now.After(ca.Cert.NotAfter):
		return nil, certs, "expired"
	case now.Before(ca.Cert.NotBefore):
		return nil, certs, "not yet valid"
	case !now.Before(renewAt(ca.Cert)):
		return ca, certs[1:], "due for renewal"
	}
	return ca, certs[1:], ""
}

// checkServing judges tls.crt and tls.key against the trusted CAs and the
// names the API server calls: it returns the certificate and key ready to
// serve and the CA that signed it, or a problem. A certificate past its
// renewal point is still returned, with the problem "due for renewal".
func checkServing(data map[string][]byte, roots []*x509.Certificate, names []string, now time.Time) (served *tls.Certificate, signer *x509.Certificate, problem string) {
	if len(data[SecretCert]) == 0 || len(data[SecretKey]) == 0 {
		return nil, nil, "missing"
	}
	pair, err := tls.X509KeyPair(data[SecretCert], data[SecretKey])
	if err != nil {
		return nil, nil, "unusable: " + err.Error()
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, nil, "unparseable: " + err.Error()
		}
		pair.Leaf = leaf
	}
	if now.After(leaf.NotAfter) {
		return nil, nil, "expired"
	}
	if now.Before(leaf.NotBefore) {
		return nil, nil, "not yet valid"
	}
	for _, n := range names {
		if err := leaf.VerifyHostname(n); err != nil {
			return nil, nil, "not valid for " + n
		}
	}
	for _, root := range roots {
		if leaf.CheckSignatureFrom(root) == nil && !now.After(root.NotAfter) {
			signer = root
			break
		}
	}
	if signer == nil {
		return nil, nil, "not signed by a trusted CA"
	}
	if !now.Before(renewAt(leaf)) {
		return &pair, signer, "due for renewal"
	}
	return &pair, signer, ""
}

// LoadCertPool reads the PEM certificates at path (the file named by flag)
// into a pool, for verifying clients.
func LoadCertPool(flag, path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	certs, err := parseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w (want PEM certificates)", flag, path, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}
