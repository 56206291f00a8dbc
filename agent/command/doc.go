// Package command receives remote door and ignition commands, checks them,
// actuates them at most once through a CAN transmitter and answers each with
// exactly one final response.
//
//	MQTT handler ─Handle─► intake ─► dispatcher ──────────────► refusal ─┐
//	                                  │ topic, size, strict JSON,         │
//	                                  │ id, signature, device, clock,     │
//	                                  │ validity, name, interlocks,       │
//	                                  │ actuator free (or queue)          │
//	                                  ▼                                   │
//	                                 job ─ [wake the bus: stale inputs] ─ │
//	                                  │   arm (at_standstill) ─ re-check  │
//	                                  │   clock, validity, interlocks     │
//	                                  ▼                                   ▼
//	             ledger.Begin (fsync) ─► Transmit ×repeat ─► feedback ─► ledger (fsync)
//	                                                                      │
//	                                       Responder.Respond ◄────────────┘
//	                                       (agent: buffer ClassCritical + audit event)
//
// The ledger (package ledger, StateDir/commands) is what makes commands
// at-most-once: an id is written and fsynced before its first frame, a
// redelivered id is answered from the ledger and never executed again, and
// at start every command a crash left unanswered gets its response (FAILED
// "interrupted" when it may have been actuated). See docs/commands.md.
package command
