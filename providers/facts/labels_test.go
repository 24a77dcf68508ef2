package facts

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzLabels: Labels encode byte for byte as the map[string]string they
// replaced (sorted keys, HTML and U+2028 escaped, invalid UTF-8 replaced),
// inside a Config as on their own, and decode back to the same labels;
// Get finds every key. Seeds: f.Add below.
func FuzzLabels(f *testing.F) {
	f.Add("org.opencontainers.image.source", "https://x/<a>&b", "é", "\u2028", "", "")
	f.Add("b", "1", "a", "2", "a", "3")
	f.Add("k\xff", "v\xfe", "\x00", "\"quoted\"\\", "z", "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3 string) {
		m := map[string]string{k1: v1, k2: v2, k3: v3}
		l := LabelsOf(m)
		got, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(m)
		if string(got) != string(want) {
			t.Fatalf("Labels encode as %s, the map as %s", got, want)
		}
		gotCfg, _ := json.Marshal(Config{Labels: l})
		wantCfg, _ := json.Marshal(struct {
			Labels       map[string]string `json:"labels"`
			User         string            `json:"user"`
			OS           string            `json:"os"`
			Architecture string            `json:"architecture"`
			Digest       string            `json:"digest"`
		}{Labels: m})
		if string(gotCfg) != string(wantCfg) {
			t.Fatalf("Config encodes as %s, with a map as %s", gotCfg, wantCfg)
		}
		var back Labels
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("decoding %s: %v", got, err)
		}
		var wantBack map[string]string
		_ = json.Unmarshal(want, &wantBack)
		if !reflect.DeepEqual(back.Map(), wantBack) {
			t.Fatalf("decoded %v, the map decodes as %v", back.Map(), wantBack)
		}
		for k, v := range m {
			if l.Get(k) != v {
				t.Fatalf("Get(%q) = %q, want %q", k, l.Get(k), v)
			}
		}
		if missing := k1 + "\x00missing"; m[missing] == "" && l.Get(missing) != "" {
			t.Fatalf("Get of a missing key = %q", l.Get(missing))
		}
	})
}

// TestLabelsJSON: no labels encode as {} (nil or empty; policy reads an
// object), null decodes as none, a repeated key keeps its last value as a
// map does, and a non-string value is an error.
func TestLabelsJSON(t *testing.T) {
	for _, l := range []Labels{nil, {}, LabelsOf(nil)} {
		if b, _ := json.Marshal(Config{Labels: l}); string(b) != `{"labels":{},"user":"","os":"","architecture":"","digest":""}` {
			t.Errorf("%#v encodes as %s, want labels {}", l, b)
		}
	}
	var c Config
	if err := json.Unmarshal([]byte(`{"labels":{"a":"1","b":"2","a":"3"}}`), &c); err != nil {
		t.Fatal(err)
	}
	if want := (Labels{{"a", "3"}, {"b", "2"}}); !reflect.DeepEqual(c.Labels, want) {
		t.Errorf("decoded %v, want %v", c.Labels, want)
	}
	if err := json.Unmarshal([]byte(`{"labels":null}`), &c); err != nil || len(c.Labels) != 0 {
		t.Errorf("null: %v, %v; want no labels", c.Labels, err)
	}
	if err := json.Unmarshal([]byte(`{"labels":{"a":1}}`), &c); err == nil {
		t.Error("a number label decoded without an error")
	}
}
