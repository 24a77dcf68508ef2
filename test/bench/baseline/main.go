// Command baseline is the reference server of `make bench`: the least an
// external-data provider must do for a warm ProviderRequest. It serves
// POST /v1/externaldata/facts over HTTPS (TLS 1.3, the same certificate as
// imagegate) from an in-memory map of precomputed facts JSON: decode the
// request, look every key up, encode the response. No logging, metrics,
// validation beyond JSON, or per-key work.
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/open-policy-agent/frameworks/constraint/pkg/externaldata"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address")
	cert := flag.String("cert", "", "TLS certificate")
	key := flag.String("key", "", "TLS key")
	factsFile := flag.String("facts", "", "JSON object: image key → facts value")
	flag.Parse()
	if err := run(*listen, *cert, *key, *factsFile); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

func run(listen, cert, key, factsFile string) error {
	raw, err := os.ReadFile(factsFile)
	if err != nil {
		return err
	}
	var values map[string]json.RawMessage
	if err := json.Unmarshal(raw, &values); err != nil {
		return fmt.Errorf("%s: %w", factsFile, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /v1/externaldata/facts", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req externaldata.ProviderRequest
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		items := make([]externaldata.Item, 0, len(req.Request.Keys))
		for _, k := range req.Request.Keys {
			if v, ok := values[k]; ok {
				items = append(items, externaldata.Item{Key: k, Value: v})
			} else {
				items = append(items, externaldata.Item{Key: k, Error: "not_found: not in the baseline's map"})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(externaldata.ProviderResponse{
			APIVersion: "externaldata.gatekeeper.sh/v1beta1",
			Kind:       externaldata.ProviderResponseKind,
			Response:   externaldata.Response{Idempotent: true, Items: items},
		})
	})
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	// The same floor as imagegate: TLS 1.3 only.
	srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS13}
	fmt.Printf("listening %s\n", ln.Addr())
	return srv.ServeTLS(ln, cert, key)
}
