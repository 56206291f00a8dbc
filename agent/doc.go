// Package agent is tcu-agent's composition root: it wires drivers, the
// telemetry pipeline, the durable buffer, identity, the MQTT session and the
// command engine together and owns their lifecycle (start order, driver
// supervision, staged and bounded shutdown). Nothing imports agent.
//
//	drivers ──Sample──► telemetry ──Append──► buffer ──Lease──► uplink ──PUBACK──► Ack
//	   ▲                    │                                      │
//	   │ Transmit           ▼                                      ▼ cmd/tcu/{thing}/request/+
//	   └──────────── command engine ◄── signals (latest values) ◄──┘
//	                        │ ledger (fsync) before actuation
//	                        └──► response = ClassCritical buffer record ──► uplink
package agent
