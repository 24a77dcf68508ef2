package server

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// Limits bound what one request may ask for.
type Limits struct {
	MaxBodyBytes int64
	MaxKeys      int
	// MaxConcurrentRequests bounds the /v1/* requests handled at once (as
	// many more wait, at most half the budget); default 128.
	MaxConcurrentRequests int
}

// Deps are what the HTTP handlers are built from.
type Deps struct {
	Lookup  Lookup
	Metrics *Metrics
	Logger  *slog.Logger
	// Budget is how long a lookup request may take before unfinished keys are
	// answered as transient.
	Budget time.Duration
	Limits Limits
	// KeepTag makes the digest provider answer repo:tag@digest.
	KeepTag bool
	// RequireClientCert protects /metrics and /v1/* with a verified client
	// certificate (set when tls.clientCAFile is); /healthz and /readyz stay
	// open for kubelet probes.
	RequireClientCert bool
	// Policy answers ImageReviews; nil leaves /v1/imagereview unavailable.
	Policy Policy
	// Ready reports readiness for /readyz; nil means ready.
	Ready func() error
	// Status adds details to /readyz (a failed policy reload, say) without
	// making the server unready: the last good policy still serves.
	Status func() map[string]string
}

// Server holds the handlers' dependencies.
type Server struct {
	lookup  Lookup
	metrics *Metrics
	logger  *slog.Logger
	budget  time.Duration
	limits  Limits
	keepTag bool
	policy  Policy
	ready   func() error
	status  func() map[string]string
}

// New returns the HTTP handler for every endpoint.
func New(d Deps) http.Handler {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics()
	}
	if d.Budget <= 0 {
		d.Budget = 2500 * time.Millisecond
	}
	if d.Limits.MaxBodyBytes <= 0 {
		d.Limits.MaxBodyBytes = 1 << 20
	}
	if d.Limits.MaxKeys <= 0 {
		d.Limits.MaxKeys = 1000
	}
	if d.Limits.MaxConcurrentRequests <= 0 {
		d.Limits.MaxConcurrentRequests = 128
	}
	s := &Server{lookup: d.Lookup, metrics: d.Metrics, logger: d.Logger, budget: d.Budget, limits: d.Limits, keepTag: d.KeepTag, policy: d.Policy, ready: d.Ready, status: d.Status}

	r := chi.NewRouter()
	r.Use(middleware.RequestID, logRequests(s.logger), recoverer(s.logger), middleware.RequestSize(d.Limits.MaxBodyBytes), deadline(d.Budget+time.Second))
	r.Method(http.MethodGet, "/healthz", s.metrics.instrument("healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})))
	r.Method(http.MethodGet, "/readyz", s.metrics.instrument("readyz", http.HandlerFunc(s.handleReady)))
	r.Group(func(r chi.Router) {
		if d.RequireClientCert {
			r.Use(requireClientCert)
		}
		r.Method(http.MethodGet, "/metrics", s.metrics.Handler())
		// One limit shared by every /v1/* endpoint; a shed request still
		// counts in requests_total (code 503).
		lim := newLimiter(d.Limits.MaxConcurrentRequests, d.Budget/2, s.metrics)
		v1 := func(name string, h http.HandlerFunc) http.Handler {
			return s.metrics.instrument(name, lim.limit(name, h))
		}
		r.Method(http.MethodPost, "/v1/externaldata/facts", v1("facts", s.handleFacts))
		r.Method(http.MethodPost, "/v1/externaldata/digest", v1("digest", s.handleDigest))
		r.Method(http.MethodPost, "/v1/imagereview", v1("imagereview", s.handleImageReview))
	})
	return r
}

func (s *Server) handleReady(w http.ResponseWriter, _ *http.Request) {
	body := map[string]string{"status": "ok"}
	if s.status != nil {
		for k, v := range s.status() {
			body[k] = v
		}
	}
	if s.ready != nil {
		if err := s.ready(); err != nil {
			body["status"], body["reason"] = "not ready", err.Error()
			writeJSON(w, http.StatusServiceUnavailable, body)
			return
		}
	}
	writeJSON(w, http.StatusOK, body)
}
