package main

import (
	"log/slog"

	"github.com/tcu-agent/tcu-agent/cmd/tcu-devcloud/devcloud"
)

// startFleetProvisioning wires the fleet-provisioning responder into the
// broker. TODO: wire cmd/tcu-devcloud/fleetprov once it has landed.
func startFleetProvisioning(_ *devcloud.Cloud, _ *slog.Logger) (stop func(), err error) {
	return func() {}, nil
}
