package cluster

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// APIProxy forwards TCP to kube-apiserver from its own 127.0.0.1 port,
// and can cut every connection and refuse new ones, then come back on the
// same port: to a client behind it, the API server went away and
// restarted (its watches end, its lists fail, then both resume). The API
// server's certificate names 127.0.0.1, so TLS is unchanged.
type APIProxy struct {
	// Kubeconfig is a copy of the cluster's that goes through the proxy.
	Kubeconfig string

	target, addr string
	mu           sync.Mutex
	l            net.Listener
	conns        map[net.Conn]bool
}

// NewAPIProxy starts a proxy in front of the cluster's API server.
func (c *Cluster) NewAPIProxy(name string) (*APIProxy, error) {
	u, err := url.Parse(c.Config.Host)
	if err != nil {
		return nil, err
	}
	p := &APIProxy{target: u.Host, conns: map[net.Conn]bool{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.addr, p.l = l.Addr().String(), l
	go p.serve(l)
	kc, err := os.ReadFile(c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(string(kc), u.Host) {
		return nil, fmt.Errorf("the kubeconfig does not name %s", u.Host)
	}
	p.Kubeconfig = filepath.Join(c.Dir, name+".kubeconfig")
	return p, os.WriteFile(p.Kubeconfig, []byte(strings.ReplaceAll(string(kc), u.Host, p.addr)), 0o600)
}

func (p *APIProxy) serve(l net.Listener) {
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns[in], p.conns[out] = true, true
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		go pipe(out, in)
		go pipe(in, out)
	}
}

// Cut closes every connection and stops accepting new ones.
func (p *APIProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// Restore accepts connections again, on the same port.
func (p *APIProxy) Restore() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		return errors.New("the proxy is not cut")
	}
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.l = l
	go p.serve(l)
	return nil
}

// Close stops the proxy for good.
func (p *APIProxy) Close() { p.Cut() }
