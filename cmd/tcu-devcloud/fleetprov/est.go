package fleetprov

import (
	"net/http"
	"time"
)

// estState holds the EST 202 knob.
type estState struct {
	pending    int           // how many more enroll requests get 202
	retryAfter time.Duration // Retry-After sent with 202
}

// SetESTPending makes the next n enroll/re-enroll requests answer
// 202 Accepted with Retry-After (rounded up to whole seconds).
func (s *Server) SetESTPending(n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.est = estState{pending: n, retryAfter: retryAfter}
}

// ESTHandler serves /.well-known/est/{cacerts,simpleenroll,simplereenroll}.
// Serve it over TLS with client certificates requested (not required)
// so claim-certificate bootstrap works; basic auth is the alternative.
func (s *Server) ESTHandler() http.Handler {
	mux := http.NewServeMux()
	return mux
}
