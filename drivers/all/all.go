// Package all links every built-in driver into a binary: cmd/tcu-agent
// blank-imports it. Each driver has its own file with a build constraint,
// so a custom build (-tags custom,driver_<kind>) links only what it names.
package all
