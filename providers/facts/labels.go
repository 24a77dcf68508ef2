package facts

import (
	"encoding/json"
	"slices"
	"strings"
)

// Labels are an image config's labels. They encode as the JSON object
// {"key": "value", …} with the keys sorted, byte for byte as a
// map[string]string does, but are kept as a slice sorted by key: a cache
// holds one set per digest, and a small Go map costs a fixed ~300 bytes
// (an 8-slot group) where four labels take 128 as a slice.
type Labels []Label

// Label is one config label.
type Label struct {
	Key, Value string
}

// LabelsOf returns m's labels sorted by key; an empty (not nil) Labels when
// m is empty.
func LabelsOf(m map[string]string) Labels {
	l := make(Labels, 0, len(m))
	for k, v := range m {
		l = append(l, Label{Key: k, Value: v})
	}
	slices.SortFunc(l, func(a, b Label) int { return strings.Compare(a.Key, b.Key) })
	return l
}

// Get returns the value of key, "" when there is no such label.
func (l Labels) Get(key string) string {
	i, ok := slices.BinarySearchFunc(l, key, func(x Label, k string) int { return strings.Compare(x.Key, k) })
	if !ok {
		return ""
	}
	return l[i].Value
}

// Map returns the labels as a map.
func (l Labels) Map() map[string]string {
	m := make(map[string]string, len(l))
	for _, x := range l {
		m[x.Key] = x.Value
	}
	return m
}

// MarshalJSON writes the labels as a JSON object, {} when there are none
// (never null: policy reads config.labels as an object).
func (l Labels) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+len(l)*48)
	b = append(b, '{')
	for i, x := range l {
		if i > 0 {
			b = append(b, ',')
		}
		k, err := json.Marshal(x.Key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(x.Value)
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads a JSON object of strings (null: no labels), as a
// map[string]string would: of repeated keys the last one counts.
func (l *Labels) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*l = LabelsOf(m)
	return nil
}
