// Package facts defines the facts schema (v1) that imagegate hands to policy, and
// the error codes every provider uses to say why facts for an image are missing.
//
// One Facts object describes one image key exactly as a caller wrote it. The same
// object is the Gatekeeper external-data value, what `imagegate facts` prints and
// what the embedded policy reads. Fields may be added; none changes meaning.
package facts
