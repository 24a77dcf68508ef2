package server_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/imagegate/imagegate/providers/signature/signaturetest"
	"github.com/imagegate/imagegate/server/config"
)

// TestServeWithTrustRefresh: server.Run with a trusted root and the default
// trust.refreshInterval (24h) serves, is ready with no trust detail, and
// exports when the trust in use was loaded.
func TestServeWithTrustRefresh(t *testing.T) {
	rootFile := signaturetest.NewSigstore(t).WriteTrustedRoot(t, t.TempDir())
	h := start(t, nil, func(c *config.Config) {
		c.Trust.TrustedRoots = map[string]string{"corp": rootFile}
	})
	if status, body := h.get(t, "/readyz"); status != http.StatusOK || strings.Contains(body, "trust") {
		t.Errorf("GET /readyz = %d %s, want 200 with no trust detail", status, body)
	}
	status, body := h.get(t, "/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics = %d", status)
	}
	if !regexp.MustCompile(`(?m)^imagegate_trust_last_success_timestamp_seconds \d\.\d+e\+09$`).MatchString(body) {
		t.Error("/metrics lacks imagegate_trust_last_success_timestamp_seconds set at startup")
	}
}
