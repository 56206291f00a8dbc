package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// mint issues a thing or claim certificate from the test CA in --ca-dir.
func mint(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	caDir := fs.String("ca-dir", "", "directory of the test CA (created if absent)")
	thing := fs.String("thing", "", "mint a thing certificate for this thing name")
	claim := fs.String("claim", "", "mint a claim (fleet provisioning) certificate with this name")
	out := fs.String("out", "", "output directory (default: --ca-dir)")
	valid := fs.Duration("valid", 365*24*time.Hour, "validity")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *caDir == "" || (*thing == "") == (*claim == "") {
		return errors.New("need --ca-dir and exactly one of --thing or --claim")
	}
	if *out == "" {
		*out = *caDir
	}
	ca, err := devcloud.LoadOrCreateCA(*caDir)
	if err != nil {
		return err
	}
	req := devcloud.MintRequest{Kind: devcloud.KindThing, CommonName: *thing, NotAfter: time.Now().Add(*valid)}
	if *claim != "" {
		req.Kind, req.CommonName = devcloud.KindClaim, *claim
	}
	id, err := ca.Mint(req)
	if err != nil {
		return err
	}
	certPath, keyPath, err := id.WriteFiles(*out, req.CommonName)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s certificate %s\nkey %s\nca %s/%s\n", req.Kind, certPath, keyPath, *caDir, devcloud.CACertFile)
	return nil
}
