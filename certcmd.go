package main

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/elph-server/elph/config"
	"github.com/elph-server/elph/platform/httpx"
)

// Files `elph cert self-signed` writes into its directory.
const (
	certCACrt     = "ca.crt"
	certCAKey     = "ca.key"
	certServerCrt = "server.crt"
	certServerKey = "server.key"
)

func certCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Make TLS certificates for closed networks"}
	var cf configFlags
	cf.register(cmd.PersistentFlags())

	var o selfSignedOptions
	selfSigned := &cobra.Command{
		Use:   "self-signed",
		Short: "Make a local CA and a server certificate it signs, and print how to trust the CA",
		Long: `For networks without a public or corporate CA. Makes a small certificate
authority (ECDSA P-256, 10 years) and a server certificate signed by it
(825 days, the most Apple devices accept) for the --host names and
addresses, and writes into --dir:

  ca.crt      the CA certificate: install it as trusted on every client, once
  ca.key      the CA key (0600): keep it secret; it can sign for any name
  server.crt  the server certificate followed by the CA certificate
  server.key  the server key (0600)

A CA already in --dir is reused, so a re-issued server certificate (new
hosts, or renewal before it expires) is trusted by every client that
already trusts the CA. Existing server files are replaced only with
--force; a new CA is made only with --new-ca (and --force when one exists).`,
		Example: `  elph cert self-signed --host elph.corp.lan --host 10.0.0.5
  elph cert self-signed -c /etc/elph/elph.yaml --host elph.corp.lan --force   # re-issue, same CA`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("dir") {
				dataDir, err := certDataDir(&cf, cmd)
				if err != nil {
					return err
				}
				o.dir = filepath.Join(dataDir, "tls")
			}
			return runSelfSigned(cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := selfSigned.Flags()
	f.StringVar(&o.dir, "dir", "", "directory for "+certCACrt+", "+certCAKey+", "+certServerCrt+", "+certServerKey+" (default <node.data_dir>/tls)")
	f.StringSliceVar(&o.hosts, "host", nil, "DNS name (*.name for a wildcard) or IP address clients use to reach the server; repeatable or comma-separated (default: this machine's hostname, localhost, 127.0.0.1, ::1)")
	f.BoolVar(&o.force, "force", false, "replace an existing "+certServerCrt+" and "+certServerKey+" (the CA is kept unless --new-ca)")
	f.BoolVar(&o.newCA, "new-ca", false, "make a new CA even if --dir has one; every client must then trust the new CA")
	cmd.AddCommand(selfSigned)
	return cmd
}

// certDataDir reads node.data_dir the way serve would. Problems elsewhere
// in the configuration do not matter here (the usual one: gateway.tls_cert
// already names the server.crt this command is about to write).
func certDataDir(cf *configFlags, cmd *cobra.Command) (string, error) {
	src, err := cf.source(cmd.Flags(), nil)
	if err != nil {
		return "", err
	}
	l, err := config.Load(src)
	if err == nil {
		return l.Config.Node.DataDir, nil
	}
	var ps config.Problems
	if errors.As(err, &ps) && l != nil {
		usable := true
		for _, p := range ps {
			if p.Key == "node.data_dir" {
				usable = false
			}
		}
		if usable && l.Config.Node.DataDir != "" {
			return l.Config.Node.DataDir, nil
		}
	}
	// Report the problems as every other command does.
	_, err = load(src, cmd.ErrOrStderr())
	return "", err
}

type selfSignedOptions struct {
	dir          string
	hosts        []string
	force, newCA bool
}

func runSelfSigned(out, errOut io.Writer, o selfSignedOptions) error {
	hosts, defaulted := o.hosts, false
	if len(hosts) == 0 {
		hosts, defaulted = defaultCertHosts(errOut), true
	}
	// Check the hosts before anything touches the disk.
	if _, _, err := httpx.SANs(hosts); err != nil {
		return fmt.Errorf("--host: %w", err)
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	exists := func(name string) (bool, error) {
		_, err := os.Lstat(path(name))
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return err == nil, err
	}
	have := map[string]bool{}
	for _, name := range []string{certCACrt, certCAKey, certServerCrt, certServerKey} {
		ok, err := exists(name)
		if err != nil {
			return err
		}
		have[name] = ok
	}

	if (have[certServerCrt] || have[certServerKey]) && !o.force {
		return fmt.Errorf("%s already has %s; add --force to replace them (the CA there is kept, so clients keep trusting the server)",
			dir, existing(have, certServerCrt, certServerKey))
	}
	hasCA := have[certCACrt] || have[certCAKey]
	var (
		ca       *httpx.CA
		reusedCA bool
	)
	switch {
	case o.newCA && hasCA && !o.force:
		return fmt.Errorf("%s already has %s; --new-ca replaces it and every client must then trust the new CA: add --force to do so",
			dir, existing(have, certCACrt, certCAKey))
	case !o.newCA && have[certCACrt] && have[certCAKey]:
		if ca, err = httpx.LoadCA(path(certCACrt), path(certCAKey)); err != nil {
			return fmt.Errorf("reuse the CA in %s: %w (--new-ca --force makes a new one; clients must then trust it)", dir, err)
		}
		reusedCA = true
	case !o.newCA && hasCA:
		return fmt.Errorf("%s has %s but not %s: put it back to issue with this CA, or make a new CA with --new-ca --force (clients must then trust it)",
			dir, existing(have, certCACrt, certCAKey), missing(have, certCACrt, certCAKey))
	default:
		if ca, err = httpx.NewCA(caCommonName()); err != nil {
			return err
		}
	}
	sc, err := ca.IssueServerCert(hosts, 0)
	if err != nil {
		return err
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if !reusedCA {
		if err := ca.WriteFiles(path(certCACrt), path(certCAKey)); err != nil {
			return err
		}
	}
	if err := sc.WriteFiles(path(certServerCrt), path(certServerKey)); err != nil {
		return err
	}
	printSelfSigned(out, errOut, dir, ca, sc, reusedCA, defaulted)
	return nil
}

// defaultCertHosts is this machine's hostname and the loopback names.
func defaultCertHosts(warn io.Writer) []string {
	var hosts []string
	if h, err := os.Hostname(); err == nil && h != "" {
		if _, _, err := httpx.SANs([]string{h}); err == nil {
			hosts = append(hosts, h)
		} else {
			fmt.Fprintf(warn, "warning: the hostname %q cannot go into a certificate (%v); name the server with --host\n", h, err)
		}
	}
	return append(hosts, "localhost", "127.0.0.1", "::1")
}

func caCommonName() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return "Elph local CA " + h
	}
	return "Elph local CA"
}

func existing(have map[string]bool, names ...string) string {
	var out []string
	for _, n := range names {
		if have[n] {
			out = append(out, n)
		}
	}
	return strings.Join(out, " and ")
}

func missing(have map[string]bool, names ...string) string {
	var out []string
	for _, n := range names {
		if !have[n] {
			out = append(out, n)
		}
	}
	return strings.Join(out, " and ")
}

// sha256Fingerprint is the colon-separated form browsers and phones show.
func sha256Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

func printSelfSigned(out, errOut io.Writer, dir string, ca *httpx.CA, sc *httpx.ServerCert, reusedCA, defaultHosts bool) {
	day := func(t time.Time) string { return t.UTC().Format(time.DateOnly) }
	var sans []string
	sans = append(sans, sc.Cert.DNSNames...)
	for _, ip := range sc.Cert.IPAddresses {
		sans = append(sans, ip.String())
	}
	caState := "new"
	if reusedCA {
		caState = "reused: clients that trust it need nothing more"
	}
	caCrt := filepath.Join(dir, certCACrt)
	srvCrt, srvKey := filepath.Join(dir, certServerCrt), filepath.Join(dir, certServerKey)

	w := func(format string, args ...any) { fmt.Fprintf(out, format, args...) }
	w("Wrote to %s:\n", dir)
	w("  %-11s CA %q (%s), valid until %s\n", certCACrt, ca.Cert.Subject.CommonName, caState, day(ca.Cert.NotAfter))
	w("  %-11s CA private key, mode 0600\n", certCAKey)
	w("  %-11s server certificate + CA, valid until %s, for %s\n", certServerCrt, day(sc.Cert.NotAfter), strings.Join(sans, ", "))
	w("  %-11s server private key, mode 0600\n", certServerKey)
	w("\nSHA-256 fingerprints (compare before trusting):\n")
	w("  CA      %s\n", sha256Fingerprint(ca.Cert))
	w("  server  %s\n", sha256Fingerprint(sc.Cert))
	if defaultHosts {
		w("\nThe certificate covers this machine's hostname and loopback only; clients that use\n" +
			"another name or address need it: re-run with --host NAME --host IP --force.\n")
	}
	if sc.Cert.NotAfter.Equal(ca.Cert.NotAfter) {
		fmt.Fprintf(errOut, "warning: the CA expires on %s and the server certificate with it; make a new CA (--new-ca --force) before then\n", day(ca.Cert.NotAfter))
	}

	w("\nUse it for the gateway, in the configuration file (e.g. /etc/elph/elph.yaml):\n")
	w("  gateway:\n    tls_cert: %s\n    tls_key: %s\n", srvCrt, srvKey)
	w("or in the environment:\n  %s=%s\n  %s=%s\n", config.EnvName("gateway.tls_cert"), srvCrt, config.EnvName("gateway.tls_key"), srvKey)
	w("then restart elph (systemctl restart elph). Re-issuing later into the same files\n" +
		"needs only a reload (systemctl reload elph); open connections are kept.\n")

	w("\nTrust the CA on every client, once (copy %s there as ca.crt):\n", caCrt)
	w("  Debian, Ubuntu, Astra Linux:\n")
	w("    sudo cp ca.crt /usr/local/share/ca-certificates/elph-ca.crt && sudo update-ca-certificates\n")
	w("  RHEL, RED OS, ALT:\n")
	w("    sudo cp ca.crt /etc/pki/ca-trust/source/anchors/elph-ca.crt && sudo update-ca-trust\n")
	w("  Windows (administrator command prompt; Chrome, Edge and Yandex Browser use this store):\n")
	w("    certutil -addstore -f Root ca.crt\n")
	w("  macOS:\n")
	w("    sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain ca.crt\n")
	w("  Browsers on Linux keep their own store:\n")
	w("    Chrome, Chromium, Yandex: certutil -d sql:$HOME/.pki/nssdb -A -t \"C,,\" -n \"Elph local CA\" -i ca.crt  (package libnss3-tools)\n")
	w("    Firefox (any OS): Settings > Privacy & Security > Certificates > View Certificates > Authorities > Import,\n")
	w("      tick \"Trust this CA to identify websites\"\n")
	w("  Android: copy ca.crt to the device, then Settings > Security > Encryption & credentials >\n")
	w("    Install a certificate > CA certificate. Browsers trust it; other apps only if they opt in to user CAs.\n")
	w("  iOS, iPadOS: open ca.crt on the device (mail, AirDrop, download), install the profile in\n")
	w("    Settings > General > VPN & Device Management, then turn on full trust in\n")
	w("    Settings > General > About > Certificate Trust Settings.\n")

	w("\nKeep %s secret: a device that trusts this CA accepts any certificate it signs.\n", certCAKey)
	w("Re-issuing needs it; between re-issues it may live offline.\n")
	if os.Geteuid() == 0 {
		fmt.Fprintf(errOut, "warning: running as root, so root owns these files and a service running as another user\n"+
			"(the elph unit runs as elph) cannot read %s. Run this command as that user\n"+
			"(sudo -u elph elph cert self-signed ...) or: chown elph: %s %s %s\n", certServerKey, dir, srvCrt, srvKey)
	}
}
