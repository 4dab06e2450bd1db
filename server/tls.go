package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// TLSFiles names the PEM files a listener's TLS is made of.
type TLSFiles struct {
	// CertFile is the certificate chain the listener presents, leaf first.
	CertFile string
	// KeyFile is the certificate's private key.
	KeyFile string
	// ClientCAFile, when set, turns on mutual TLS: a client must present a
	// certificate that chains to one of the CAs in it, or the handshake fails.
	ClientCAFile string
}

// TLSConfig is a server TLS configuration for Config.TLS or Config.AdminTLS that
// serves the certificate in files and follows the files when they change, so a
// renewed certificate (or a new client CA) is in use without a restart.
//
// Each handshake looks at the files' identity, size and modification time (one stat
// each; nothing is read while they stay the same) and loads them afresh when any
// changed. New connections get the new certificate; open ones keep the one they were
// made with. Replace the files by renaming new ones into place, as certbot and
// Kubernetes secret volumes do: a file rewritten in place with the same size within
// the file system's clock tick can go unnoticed. Files that do not load (a renewal
// half written, a key that does not match its certificate) are logged and the last
// certificate that loaded is served until the files change again.
//
// The files must load now: the error names the one that does not.
func TLSConfig(files TLSFiles, log *slog.Logger) (*tls.Config, error) {
	if files.CertFile == "" || files.KeyFile == "" {
		return nil, errors.New("server: TLS needs both a certificate file and a key file")
	}
	if log == nil {
		log = slog.Default()
	}
	r := &certReloader{files: files, log: log}
	r.seen = r.stamp()
	cfg, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cfg = cfg
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: r.configFor}, nil
}

// certReloader holds the last configuration that loaded and what the files looked
// like when they were last read.
type certReloader struct {
	files TLSFiles
	log   *slog.Logger

	mu   sync.Mutex
	seen [3]fileStamp // CertFile, KeyFile, ClientCAFile at the last load attempt
	cfg  *tls.Config  // the last configuration that loaded
}

// fileStamp is what a stat tells of a file: enough to see that it was replaced or
// rewritten.
type fileStamp struct {
	info os.FileInfo // nil for an absent name or one that cannot be read
	err  string
}

func (a fileStamp) same(b fileStamp) bool {
	if a.info == nil || b.info == nil {
		return a.info == nil && b.info == nil && a.err == b.err
	}
	return os.SameFile(a.info, b.info) && a.info.Size() == b.info.Size() && a.info.ModTime().Equal(b.info.ModTime())
}

func stampOf(name string) fileStamp {
	if name == "" {
		return fileStamp{}
	}
	info, err := os.Stat(name)
	if err != nil {
		return fileStamp{err: err.Error()}
	}
	return fileStamp{info: info}
}

func (r *certReloader) stamp() [3]fileStamp {
	return [3]fileStamp{stampOf(r.files.CertFile), stampOf(r.files.KeyFile), stampOf(r.files.ClientCAFile)}
}

// configFor is the tls.Config of one handshake: the last one that loaded, loaded
// again first if the files changed since the last attempt.
func (r *certReloader) configFor(*tls.ClientHelloInfo) (*tls.Config, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.stamp()
	changed := false
	for i := range now {
		changed = changed || !now[i].same(r.seen[i])
	}
	if !changed {
		return r.cfg, nil
	}
	// Whatever comes of it, these files are not tried again until they change, so
	// a broken renewal is logged once rather than at every handshake.
	r.seen = now
	cfg, err := r.load()
	if err != nil {
		r.log.Warn("TLS files changed but do not load; serving the previous certificate", "err", err)
		return r.cfg, nil
	}
	r.cfg = cfg
	r.log.Info("TLS certificate reloaded", "cert_file", r.files.CertFile,
		"not_after", cfg.Certificates[0].Leaf.NotAfter.UTC().Format(time.RFC3339))
	return cfg, nil
}

// load reads the files into a configuration for one handshake.
func (r *certReloader) load() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(r.files.CertFile, r.files.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s with key %s: %w", r.files.CertFile, r.files.KeyFile, err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		// gRPC needs HTTP/2, negotiated by ALPN.
		NextProtos: []string{"h2"},
	}
	if r.files.ClientCAFile != "" {
		pem, err := os.ReadFile(r.files.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS client CA %s: no PEM certificate in it", r.files.ClientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
