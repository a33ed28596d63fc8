package main

import (
	"strings"
	"testing"
)

// Webhook settings: URLs need a secret in the Standard Webhooks form and
// the other way round; retry waits stay within their bounds; the secret
// never appears in an error.
func TestWebhookConfig(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	base := map[string]string{"ROOMCAST_JWT_SECRET": "0123456789abcdef0123456789abcdef"}
	hooks := func(more ...string) map[string]string {
		m := map[string]string{"ROOMCAST_WEBHOOK_URL": "https://app.example/hooks", "ROOMCAST_WEBHOOK_SECRET": secret}
		for i := 0; i+1 < len(more); i += 2 {
			m[more[i]] = more[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		valid bool
	}{
		{"off", nil, true},
		{"on", hooks(), true},
		{"two URLs", hooks("ROOMCAST_WEBHOOK_URL", "https://a.example/h, http://b.example:8000/h"), true},
		{"URL without a secret", hooks("ROOMCAST_WEBHOOK_SECRET", ""), false},
		{"secret without a URL", hooks("ROOMCAST_WEBHOOK_URL", ""), false},
		{"not http", hooks("ROOMCAST_WEBHOOK_URL", "ftp://a.example/h"), false},
		{"no host", hooks("ROOMCAST_WEBHOOK_URL", "https:///h"), false},
		{"secret without whsec_", hooks("ROOMCAST_WEBHOOK_SECRET", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), false},
		{"secret not base64", hooks("ROOMCAST_WEBHOOK_SECRET", "whsec_not*base64"), false},
		{"secret too short", hooks("ROOMCAST_WEBHOOK_SECRET", "whsec_c2hvcnQ="), false},
		{"vacate delay zero", hooks("ROOMCAST_WEBHOOK_VACATE_DELAY", "0s"), false},
		{"retry min too short", hooks("ROOMCAST_WEBHOOK_RETRY_MIN", "1ms"), false},
		{"retry max below min", hooks("ROOMCAST_WEBHOOK_RETRY_MIN", "2s", "ROOMCAST_WEBHOOK_RETRY_MAX", "1s"), false},
		{"retry max too long", hooks("ROOMCAST_WEBHOOK_RETRY_MAX", "11m"), false},
		{"retry shortened", hooks("ROOMCAST_WEBHOOK_RETRY_MIN", "100ms", "ROOMCAST_WEBHOOK_RETRY_MAX", "1s"), true},
		{"max pending zero", hooks("ROOMCAST_WEBHOOK_MAX_PENDING", "0"), false},
	} {
		getenv := func(k string) string {
			if v, ok := tc.env[k]; ok {
				return v
			}
			return base[k]
		}
		cfg, err := loadConfig(nil, getenv)
		if (err == nil) != tc.valid {
			t.Errorf("%s: err %v, want valid %v", tc.name, err, tc.valid)
		}
		if err != nil && strings.Contains(err.Error(), "MfKQ9r8G") {
			t.Errorf("%s: the secret is in the error: %v", tc.name, err)
		}
		if tc.name == "on" && (cfg.WebhookVacateDelay.String() != "5s" || cfg.WebhookMaxPending != 100000 ||
			cfg.WebhookRetryMin.String() != "1s" || cfg.WebhookRetryMax.String() != "10m0s") {
			t.Errorf("defaults: %+v", cfg)
		}
		if tc.name == "two URLs" && len(cfg.WebhookURLs) != 2 {
			t.Errorf("two URLs: %q", cfg.WebhookURLs)
		}
	}
}
