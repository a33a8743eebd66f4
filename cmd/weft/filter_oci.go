package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/weftmesh/weft/proxy/wasm/oci"
	"github.com/weftmesh/weft/sdk/filtertest"
	"github.com/weftmesh/weft/sdk/wasmbuild"
)

const filterOCIUsage = `usage:
  weft filter push [-layout wasm|image] [-go PKG] [FILE.wasm] REF   push a module (or build Go package PKG) to REF
  weft filter pull [-o FILE.wasm] REF                               pull a module; print its digests
  weft filter keygen -out PREFIX                                    write PREFIX.key and PREFIX.pub (ECDSA P-256)
  weft filter sign -key PREFIX.key REF                              sign REF's manifest, cosign's format
  weft filter verify -key PREFIX.pub REF                            check REF carries a signature by the key
  (each takes -pull-secret config.json and -ca-file PEM for the registry)
`

// runFilter dispatches weft filter: the registry subcommands here, run and
// test to the filter harness.
func runFilter(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "push", "pull", "keygen", "sign", "verify":
			return filterOCI(ctx, args[0], args[1:], stdout, stderr)
		case "-h", "-help", "--help", "help":
			fmt.Fprint(stdout, filterOCIUsage)
		}
	}
	return filtertest.Command(ctx, args, stdout, stderr)
}

func filterOCI(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft filter "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, filterOCIUsage) }
	secret := fs.String("pull-secret", "", "docker config.json with the registry's credentials")
	caFile := fs.String("ca-file", "", "PEM bundle trusted for the registry's TLS")
	layout := fs.String("layout", oci.LayoutWasm, "push: wasm (one application/wasm layer) or image (a layer holding plugin.wasm)")
	goPkg := fs.String("go", "", "push: build this Go package (GOOS=wasip1, the Weft or Proxy-Wasm Go SDK) and push the result")
	out := fs.String("o", "", "pull: write the module here")
	keyFile := fs.String("key", "", "sign: private key; verify: public key (PEM)")
	prefix := fs.String("out", "", "keygen: write PREFIX.key and PREFIX.pub")
	if err := fs.Parse(args); err != nil {
		return err
	}
	popts := oci.PushOptions{Layout: *layout, PullSecret: *secret, CAFile: *caFile}
	src := func(ref string) oci.Source {
		return oci.Source{Ref: ref, Policy: oci.Always, PullSecret: *secret, CAFile: *caFile}
	}
	rest := fs.Args()
	needRef := func(n int) error {
		if len(rest) != n {
			fs.Usage()
			return fmt.Errorf("filter %s: want %d argument(s), got %d", cmd, n, len(rest))
		}
		return nil
	}
	switch cmd {
	case "keygen":
		if *prefix == "" || len(rest) != 0 {
			fs.Usage()
			return errors.New("filter keygen: -out PREFIX is required")
		}
		if err := oci.GenerateKey(*prefix+".key", *prefix+".pub"); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s.key (keep it secret) and %s.pub\n", *prefix, *prefix)
		return nil
	case "push":
		var module []byte
		switch {
		case *goPkg != "":
			if err := needRef(1); err != nil {
				return err
			}
			wd, err := os.Getwd()
			if err != nil {
				return err
			}
			m, err := wasmbuild.Go(ctx, wasmbuild.Options{Dir: wd, Package: *goPkg})
			if err != nil {
				return fmt.Errorf("filter push: building %s: %w", *goPkg, err)
			}
			module = m.Wasm
		default:
			if err := needRef(2); err != nil {
				return err
			}
			b, err := os.ReadFile(rest[0])
			if err != nil {
				return err
			}
			module, rest = b, rest[1:]
		}
		d, err := oci.Push(ctx, rest[0], module, popts)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pushed %s\nmanifest %s\nmodule sha256:%s (%d bytes)\n", rest[0], d, sha256Hex(module), len(module))
		return nil
	case "pull":
		if err := needRef(1); err != nil {
			return err
		}
		m, err := oci.NewPuller(oci.Options{}).Pull(ctx, src(rest[0]))
		if err != nil {
			return err
		}
		if *out != "" {
			if err := os.WriteFile(*out, m.Bytes, 0o644); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, "manifest %s\nmodule sha256:%s (%d bytes)\n", m.Manifest, m.SHA256, len(m.Bytes))
		return nil
	case "sign":
		if err := needRef(1); err != nil {
			return err
		}
		if *keyFile == "" {
			return errors.New("filter sign: -key FILE is required")
		}
		k, err := oci.LoadPrivateKey(*keyFile)
		if err != nil {
			return err
		}
		d, err := oci.Sign(ctx, rest[0], k, popts)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "signed %s (%s)\n", rest[0], d)
		return nil
	case "verify":
		if err := needRef(1); err != nil {
			return err
		}
		if *keyFile == "" {
			return errors.New("filter verify: -key FILE is required")
		}
		keys, err := oci.LoadPublicKeys(*keyFile)
		if err != nil {
			return err
		}
		m, err := oci.NewPuller(oci.Options{}).Pull(ctx, src(rest[0]))
		if err != nil {
			return err
		}
		if err := oci.Verify(ctx, m.Repository, m.Manifest, keys, src(rest[0]), 0); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "verified %s (%s): signed by %s\n", rest[0], m.Manifest, *keyFile)
		return nil
	}
	return fmt.Errorf("filter: unknown subcommand %q", cmd)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
