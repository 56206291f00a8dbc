package uplink

import "time"

// Profile hooks (CONTRACTS A.2). These are placeholders so that the
// profile engine compiles and calls them: the `keepalive` branch provides
// the real implementation in a file of the same name, which replaces this
// one at merge. Until then they change nothing.

// SetKeepAlive sets the MQTT keep-alive of the next connection (clamped
// to AWS's 30 s–1200 s). Placeholder: no effect.
func (s *Session) SetKeepAlive(d time.Duration) { _ = d }

// SetBatchLatency sets the longest a record waits for others to share its
// message. Placeholder: no effect.
func (s *Session) SetBatchLatency(d time.Duration) { _ = d }

// SetPublishClasses restricts the buffer classes the session drains:
// records of a class for which publish returns false stay in the buffer;
// nil publishes every class. Placeholder: no effect.
func (s *Session) SetPublishClasses(publish func(class uint8) bool) { _ = publish }
