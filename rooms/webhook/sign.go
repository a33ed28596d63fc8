package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
)

// secretPrefix starts a Standard Webhooks secret; the rest is base64.
const secretPrefix = "whsec_"

// Signer signs event bodies the Standard Webhooks way.
type Signer struct {
	key []byte
}

// ParseSecret reads a Standard Webhooks secret, "whsec_" + base64 of the
// key (at least 16 bytes).
func ParseSecret(secret string) (Signer, error) {
	b64, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok {
		return Signer{}, errors.New("webhook secret must start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return Signer{}, errors.New("webhook secret is not whsec_ followed by base64")
	}
	if len(key) < 16 {
		return Signer{}, errors.New("webhook secret key is shorter than 16 bytes")
	}
	return Signer{key: key}, nil
}

// Sign returns the webhook-signature header value of body sent as message
// id at unix second ts: "v1," + base64 of HMAC-SHA256 over "id.ts.body".
func (s Signer) Sign(id string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, ts, 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
