// Package agenttest is the system-test tier: it runs the real tcu-agent
// binary as a subprocess against a simulated vehicle and the dev cloud
// hosted in the test process, so that a test can cut the agent's power
// (SIGKILL) at any moment and observe every CAN frame and every MQTT
// message around the cut.
//
//	test process                                  subprocess
//	┌────────────────────────────────────────┐    ┌───────────────┐
//	│ drivers/sim ─► canbus.Virtual ─ Serve ─┼─unix─► tcu-agent    │
//	│                  └─► bus observer      │    │  (built by    │
//	│ devcloud broker ◄──────────────────────┼─tcp──┤   Build)     │
//	│   └─► stream, response observers       │    │  ctl socket ◄─┼─ ctl.Query
//	└────────────────────────────────────────┘    └───────────────┘
//
// Build compiles ./cmd/tcu-agent once (a test binary calls it from
// TestMain); Start brings up the in-process half and writes the agent's
// config, derived from configs/demo.toml with this test's state dir, bus
// socket, broker address and ctl socket; System.StartAgent runs the binary
// on that config. Every agent started is killed and reaped when the test
// ends, and its stderr is written to the test log if the test failed (or
// always, with AGENTTEST_LOGS=1).
//
// Only _test.go files may import this package.
package agenttest
