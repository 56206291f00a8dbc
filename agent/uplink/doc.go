// Package uplink is the agent's one MQTT session to AWS IoT Core (or any
// MQTT 3.1.1 broker) on github.com/eclipse/paho.mqtt.golang.
//
// The session drains the durable buffer: it leases records, packs stream
// records into the versioned envelope of PRODUCT.md (one message per topic
// up to MaxPayload bytes or BatchLatency), publishes at QoS 1 and acks
// exactly the records of a message when its PUBACK arrives; anything not
// acknowledged is released back to the buffer when the connection goes.
// paho's own store is disabled: durability lives only in the buffer.
//
//	Queue.Lease ──► batcher ──► window (≤100) ──► rate (≤100/s) ──► PUBLISH
//	     ▲                                                            │
//	     └── Release (lost, timeout)        Ack ◄── PUBACK ◄──────────┘
//
// It keeps the AWS IoT Core limits (in-flight window, publish rate
// counting inbound, payload size, ≤ 8 filters per SUBSCRIBE, ≤ 50
// subscriptions, keep-alive 30–1200 s, QoS ≤ 1, no retained publish on $
// topics, every SUBACK code checked), uses the thing name as client ID
// with a persistent session, announces a retained online/offline status
// with an LWT, and reconnects with full-jitter exponential backoff, never
// more than one CONNECT per second, backing off long on identity
// failures (ErrAuth).
//
// A silently dead link (a carrier NAT that forgot the mapping) is found
// within 1.5 × keep-alive from the reads on the socket, sooner when a
// publish goes unanswered, and retried at once (linkwatch.go); optional
// adaptive keep-alive learns per network how long the path keeps an idle
// connection (adaptive.go). A record goes out at once when nothing is in
// flight and its topic was quiet for BatchLatency (adaptive batching).
// Profiles adjust the session at run time (profile_hooks.go).
//
// Conn is a plain short-lived connection for fleet provisioning; Shadow
// reports last-known state to the device shadow.
package uplink
