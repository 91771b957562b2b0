package iscsi

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// CHAPAlgorithmMD5 is the CHAP_A value of MD5, the only algorithm offered.
const CHAPAlgorithmMD5 = "5"

// ChallengeLen is the size of the challenges this package generates.
const ChallengeLen = 16

// ErrCHAP is the error of a CHAP exchange that fails authentication.
var ErrCHAP = errors.New("iscsi: CHAP authentication failed")

// CHAPResponse computes MD5(id || secret || challenge) (RFC 1994).
func CHAPResponse(id byte, secret string, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

// CHAPVerify reports in constant time whether resp answers challenge with secret.
func CHAPVerify(id byte, secret string, challenge, resp []byte) bool {
	want := CHAPResponse(id, secret, challenge)
	return subtle.ConstantTimeCompare(want, resp) == 1
}

// NewChallenge returns a random identifier and challenge.
func NewChallenge() (byte, []byte, error) {
	b := make([]byte, ChallengeLen+1)
	if _, err := rand.Read(b); err != nil {
		return 0, nil, fmt.Errorf("CHAP challenge: %w", err)
	}
	return b[0], b[1:], nil
}

// EncodeBinary encodes b as an iSCSI hex binary value ("0x...").
func EncodeBinary(b []byte) string { return "0x" + hex.EncodeToString(b) }

// DecodeBinary decodes an iSCSI binary value, hex ("0x") or base64 ("0b").
func DecodeBinary(v string) ([]byte, error) {
	switch {
	case len(v) > 2 && (strings.HasPrefix(v, "0x") || strings.HasPrefix(v, "0X")):
		s := v[2:]
		if len(s)%2 == 1 {
			s = "0" + s
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("binary value %q: %w", v, err)
		}
		return b, nil
	case len(v) > 2 && (strings.HasPrefix(v, "0b") || strings.HasPrefix(v, "0B")):
		b, err := base64.StdEncoding.DecodeString(v[2:])
		if err != nil {
			return nil, fmt.Errorf("binary value %q: %w", v, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("binary value %q: %w", v, ErrBadText)
}
