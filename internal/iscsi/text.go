package iscsi

import (
	"errors"
	"fmt"
	"strings"
)

// Limits of the text codec (RFC 7143 section 6.1).
const (
	MaxKeyLen   = 63
	MaxValueLen = 8192
	// MaxTextLen bounds a whole multi-PDU text exchange.
	MaxTextLen = 64 << 10
)

// Special values of the text keys.
const (
	NotUnderstood = "NotUnderstood"
	Irrelevant    = "Irrelevant"
	Reject        = "Reject"
)

// ErrBadText is the error of malformed key=value data.
var ErrBadText = errors.New("iscsi: malformed text data")

// KV is one key=value pair.
type KV struct {
	Key   string
	Value string
}

// ParseText decodes NUL-terminated key=value pairs. A trailing pair without its NUL is
// accepted (some initiators omit it); empty strings between NULs are skipped.
func ParseText(data []byte) ([]KV, error) {
	if len(data) > MaxTextLen {
		return nil, fmt.Errorf("text of %d bytes: %w", len(data), ErrBadText)
	}
	var kvs []KV
	for len(data) > 0 {
		end := 0
		for end < len(data) && data[end] != 0 {
			end++
		}
		item := data[:end]
		if end < len(data) {
			data = data[end+1:]
		} else {
			data = nil
		}
		if len(item) == 0 {
			continue
		}
		eq := -1
		for i, c := range item {
			if c == '=' {
				eq = i
				break
			}
		}
		if eq <= 0 {
			return nil, fmt.Errorf("text item %q without key=value: %w", trunc(item), ErrBadText)
		}
		if eq > MaxKeyLen {
			return nil, fmt.Errorf("text key %q longer than %d: %w", trunc(item[:eq]), MaxKeyLen, ErrBadText)
		}
		if len(item)-eq-1 > MaxValueLen {
			return nil, fmt.Errorf("text value of key %q longer than %d: %w", item[:eq], MaxValueLen, ErrBadText)
		}
		kvs = append(kvs, KV{Key: string(item[:eq]), Value: string(item[eq+1:])})
	}
	return kvs, nil
}

func trunc(b []byte) string {
	if len(b) > 32 {
		return string(b[:32]) + "..."
	}
	return string(b)
}

// AppendText encodes kvs, each followed by a NUL, to dst.
func AppendText(dst []byte, kvs []KV) []byte {
	for _, kv := range kvs {
		dst = append(dst, kv.Key...)
		dst = append(dst, '=')
		dst = append(dst, kv.Value...)
		dst = append(dst, 0)
	}
	return dst
}

// Get returns the value of the first pair with key.
func Get(kvs []KV, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

// SplitList splits a comma-separated list value.
func SplitList(v string) []string { return strings.Split(v, ",") }
