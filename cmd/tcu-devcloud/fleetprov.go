package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/fleetprov"
)

// Provisioning template served by the devcloud (configs/tcu-agent.toml
// names it): the thing name is the device's SerialNumber.
const templateName = "TcuFleetTemplate"

// startFleetProvisioning wires the fleet-provisioning responder into the
// broker and, with estAddr, serves EST over HTTPS. stop ends both.
func startFleetProvisioning(cloud *devcloud.Cloud, estAddr string, log *slog.Logger) (stop func(), err error) {
	ca := cloud.CA()
	fp, err := fleetprov.New(fleetprov.Options{
		Broker: cloud, Registry: cloud, CACert: ca.Cert, CAKey: ca.Key, Logger: log,
		Templates: map[string]fleetprov.Template{templateName: {ThingNameParam: "SerialNumber"}},
	})
	if err != nil {
		return nil, fmt.Errorf("fleet provisioning: %w", err)
	}
	if estAddr == "" {
		return func() { _ = fp.Close() }, nil
	}
	srvID, err := ca.ServerIdentity()
	if err != nil {
		_ = fp.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", estAddr)
	if err != nil {
		_ = fp.Close()
		return nil, fmt.Errorf("est: listen %s: %w", estAddr, err)
	}
	hs := &http.Server{Handler: fp.ESTHandler(), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{srvID.Certificate},
			ClientCAs: ca.Pool(), ClientAuth: tls.VerifyClientCertIfGiven}}
	done := make(chan struct{})
	go func() { // ends when hs is shut down
		defer close(done)
		if err := hs.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("est server stopped", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		<-done
		_ = fp.Close()
	}, nil
}
