package server

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are imagegate's Prometheus metrics, on a private registry. Labels
// are low-cardinality: never an image or a digest.
type Metrics struct {
	reg              *prometheus.Registry
	requests         *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	items            *prometheus.CounterVec
	registryRequests *prometheus.CounterVec
	registryDuration *prometheus.HistogramVec
	cache            *prometheus.CounterVec
	inFlight         prometheus.Gauge
	certReloads      *prometheus.CounterVec
	verifications    *prometheus.CounterVec
	decisions        *prometheus.CounterVec
	policyReloads    *prometheus.CounterVec
	concurrent       prometheus.Gauge
	queued           prometheus.Gauge
	shed             *prometheus.CounterVec
	trustRefreshes   *prometheus.CounterVec
	trustLoaded      prometheus.Gauge
}

// NewMetrics registers every metric on a new private registry.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := promauto.With(reg)
	return &Metrics{
		reg: reg,
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imagegate", Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests served, by handler and status code.",
		}, []string{"handler", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "imagegate", Subsystem: "http", Name: "request_duration_seconds",
			Help:    "HTTP request latency by handler.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"handler"}),
		items: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imagegate", Subsystem: "externaldata", Name: "items_total",
			Help: "External-data keys answered, by provider and result (ok, an error code, or omitted for transient failures).",
		}, []string{"provider", "result"}),
		registryRequests: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imagegate", Subsystem: "registry", Name: "requests_total",
			Help: "HTTP requests to registries, by operation and result (status code or error).",
		}, []string{"operation", "result"}),
		registryDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "imagegate", Subsystem: "registry", Name: "request_duration_seconds",
			Help:    "Latency of HTTP requests to registries, by operation.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"operation"}),
		cache: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imagegate", Subsystem: "cache", Name: "lookups_total",
			Help: "Facts cache lookups, by cache (tag, facts, negative) and result (hit, miss).",
		}, []string{"cache", "result"}),
		inFlight: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "imagegate", Subsystem: "lookup", Name: "in_flight",
			Help: "Cold registry lookups running now.",
		}),
		verifications: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imagegate", Subsystem: "signature", Name: "verifications_total",
			Help: "Signature and attestation entries checked, by storage format (bundle, legacy) and result (verified, failed).",
		}, []string{"format", "result"}),
		decisions: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imagegate", Subsystem: "imagereview", Name: "decisions_total",
			Help: "ImageReview answers, by result (allowed, denied; unavailable: denied only because images could not be checked right now, answered 503; over_budget: not admitted within the budget, 503).",
		}, []string{"result"}),
		policyReloads: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imagegate", Subsystem: "policy", Name: "reloads_total",
			Help: "Policy directory reload attempts, by result (ok, error).",
		}, []string{"result"}),
		concurrent: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "imagegate", Subsystem: "http", Name: "requests_in_progress",
			Help: "/v1/* requests being handled now (at most limits.maxConcurrentRequests).",
		}),
		queued: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "imagegate", Subsystem: "http", Name: "requests_waiting",
			Help: "/v1/* requests waiting for a slot under limits.maxConcurrentRequests.",
		}),
		shed: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imagegate", Subsystem: "http", Name: "requests_shed_total",
			Help: "/v1/* requests refused with 503 because the server was overloaded, by handler.",
		}, []string{"handler"}),
		certReloads: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imagegate", Subsystem: "tls", Name: "reloads_total",
			Help: "Serving certificate reload attempts, by result.",
		}, []string{"result"}),
		trustRefreshes: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "imagegate", Subsystem: "trust", Name: "refreshes_total",
			Help: "Reloads of trust.keys, trust.trustedRoots and trust.tuf every trust.refreshInterval, by result (ok, error: the previous keys and roots keep verifying).",
		}, []string{"result"}),
		trustLoaded: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "imagegate", Subsystem: "trust", Name: "last_success_timestamp_seconds",
			Help: "When the keys and trusted roots in use were loaded (at startup or by the last successful refresh), in seconds since the epoch.",
		}),
	}
}

// Registry returns the private Prometheus registry.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ObserveRegistryRequest implements registry.Observer.
func (m *Metrics) ObserveRegistryRequest(op, result string, d time.Duration) {
	m.registryRequests.WithLabelValues(op, result).Inc()
	m.registryDuration.WithLabelValues(op).Observe(d.Seconds())
}

// ObserveCache implements lookup.Observer.
func (m *Metrics) ObserveCache(cache string, hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	m.cache.WithLabelValues(cache, result).Inc()
}

// ObserveInFlight implements lookup.Observer.
func (m *Metrics) ObserveInFlight(delta int) { m.inFlight.Add(float64(delta)) }

// ObserveCertReload counts a serving certificate reload attempt.
func (m *Metrics) ObserveCertReload(err error) {
	if err != nil {
		m.certReloads.WithLabelValues("error").Inc()
		return
	}
	m.certReloads.WithLabelValues("ok").Inc()
}

// ObserveVerification implements signature.Observer.
func (m *Metrics) ObserveVerification(format, result string) {
	m.verifications.WithLabelValues(format, result).Inc()
}

// ObservePolicyReload counts a policy directory reload attempt.
func (m *Metrics) ObservePolicyReload(err error) {
	if err != nil {
		m.policyReloads.WithLabelValues("error").Inc()
		return
	}
	m.policyReloads.WithLabelValues("ok").Inc()
}
