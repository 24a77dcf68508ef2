// Package loadreport is the JSON report the load generator (test/bench/loadgen)
// prints for one run and the benchmark driver reads: one type for both sides.
package loadreport

// Report is one load run's outcome.
type Report struct {
	Workers   int     `json:"workers"`
	Rate      float64 `json:"rate"` // requested total rate, 0 = unpaced
	Requests  int     `json:"requests"`
	Errors    int     `json:"errors"`
	FirstErr  string  `json:"firstError,omitempty"`
	Seconds   float64 `json:"seconds"`
	RPS       float64 `json:"rps"`
	KeysPerS  float64 `json:"keysPerSecond"`
	P50Ms     float64 `json:"p50ms"`
	P90Ms     float64 `json:"p90ms"`
	P99Ms     float64 `json:"p99ms"`
	MaxMs     float64 `json:"maxms"`
	Truncated bool    `json:"truncated,omitempty"` // a worker hit maxSamples
}
