package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5/middleware"
)

// logRequests logs one line per request: no bodies, no headers, no credentials.
func logRequests(logger *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			start := time.Now()
			next.ServeHTTP(ww, r)
			logger.LogAttrs(r.Context(), slog.LevelInfo, "request",
				slog.String("request_id", middleware.GetReqID(r.Context())),
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", ww.Status()),
				slog.Int("bytes", ww.BytesWritten()),
				slog.Float64("duration_seconds", time.Since(start).Seconds()),
			)
		})
	}
}

// recoverer turns a panic into a 500 and a logged stack, keeping the process up.
func recoverer(logger *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					logger.LogAttrs(r.Context(), slog.LevelError, "panic",
						slog.String("request_id", middleware.GetReqID(r.Context())),
						slog.Any("panic", v),
						slog.String("stack", string(debug.Stack())),
					)
					writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// deadline bounds every request's context. Handlers answer within their own
// budget first; this is the backstop.
func deadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// instrument counts requests and their latency under a fixed handler label.
func (m *Metrics) instrument(handler string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		start := time.Now()
		next.ServeHTTP(ww, r)
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		m.requests.WithLabelValues(handler, strconv.Itoa(status)).Inc()
		m.duration.WithLabelValues(handler).Observe(time.Since(start).Seconds())
	})
}

// requireClientCert refuses requests that did not present a client
// certificate verified against the configured client CA (Gatekeeper's, the
// apiserver's). The TLS layer verifies any certificate presented; this
// decides which paths need one, so health probes work without.
func requireClientCert(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			const msg = "forbidden: a client certificate signed by imagegate's tls.clientCAFile is required"
			if strings.HasPrefix(r.URL.Path, "/v1/externaldata/") {
				writeSystemError(w, http.StatusForbidden, msg)
				return
			}
			writeJSON(w, http.StatusForbidden, map[string]string{"error": msg})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// limiter bounds the /v1/* requests handled at once. A request over the
// limit waits for a slot, at most wait and only while fewer than cap(queue)
// others wait; otherwise it is shed with 503 and a reason naming the cause,
// so an overload degrades into fast, explicit refusals rather than latency
// past every caller's deadline and unbounded memory.
type limiter struct {
	slots   chan struct{}
	queue   chan struct{}
	wait    time.Duration
	metrics *Metrics
}

func newLimiter(n int, wait time.Duration, m *Metrics) *limiter {
	return &limiter{slots: make(chan struct{}, n), queue: make(chan struct{}, n), wait: wait, metrics: m}
}

// acquire takes a slot; it returns a release func, or an empty reason when
// no slot could be had.
func (l *limiter) acquire(r *http.Request) (release func(), reason string) {
	release = func() { <-l.slots; l.metrics.concurrent.Dec() }
	select {
	case l.slots <- struct{}{}:
		l.metrics.concurrent.Inc()
		return release, ""
	default:
	}
	select {
	case l.queue <- struct{}{}:
	default:
		return nil, fmt.Sprintf("overloaded: %d requests in progress and %d waiting, the limit (limits.maxConcurrentRequests); retry", cap(l.slots), cap(l.queue))
	}
	l.metrics.queued.Inc()
	defer func() { <-l.queue; l.metrics.queued.Dec() }()
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		l.metrics.concurrent.Inc()
		return release, ""
	case <-t.C:
		return nil, fmt.Sprintf("overloaded: no request slot free within %s (limits.maxConcurrentRequests %d in progress); retry", l.wait, cap(l.slots))
	case <-r.Context().Done():
		return nil, "overloaded: request cancelled while waiting for a slot: " + r.Context().Err().Error()
	}
}

// limit wraps one /v1/* handler; handler (the metrics label) picks the
// shape of the refusal.
func (l *limiter) limit(handler string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release, reason := l.acquire(r)
		if release == nil {
			l.metrics.shed.WithLabelValues(handler).Inc()
			if handler == "imagereview" {
				writeReviewUnavailable(w, "imagegate "+reason, 1)
				return
			}
			// Gatekeeper shows systemError; a non-200 fails closed.
			w.Header().Set("Retry-After", "1")
			writeSystemError(w, http.StatusServiceUnavailable, reason)
			return
		}
		defer release()
		next.ServeHTTP(w, r)
	})
}
