package tests

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roomcast/roomcast/tests/testserver"
)

// TestInvalidConfig: the binary refuses invalid configuration at start:
// it exits non-zero with one line on stderr that names the setting and
// never shows a secret.
func TestInvalidConfig(t *testing.T) {
	t.Parallel()
	bin := testserver.Binary(t)
	garbageKey := filepath.Join(t.TempDir(), "not-a-key.pem")
	if err := os.WriteFile(garbageKey, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const leak = "hunter2-very-secret-value"
	cases := []struct {
		name  string
		env   map[string]string // on top of a valid JWT secret
		args  []string
		names string // the setting the line must name
	}{
		{"ttl not a duration", map[string]string{"ROOMCAST_PRESENCE_TTL": "abc"}, nil, "ROOMCAST_PRESENCE_TTL"},
		{"ttl flag not a duration", nil, []string{"-presence-ttl", "abc"}, "-presence-ttl"},
		{"heartbeat equal to ttl", map[string]string{"ROOMCAST_HEARTBEAT": "30s"}, nil, "ROOMCAST_HEARTBEAT"},
		{"heartbeat above ttl", map[string]string{"ROOMCAST_HEARTBEAT": "5s", "ROOMCAST_PRESENCE_TTL": "2s"}, nil, "ROOMCAST_HEARTBEAT"},
		{"short secret", map[string]string{"ROOMCAST_JWT_SECRET": leak}, nil, "ROOMCAST_JWT_SECRET"},
		{"short secret flag", nil, []string{"-jwt-secret", leak}, "JWT_SECRET"},
		{"no key", map[string]string{"ROOMCAST_JWT_SECRET": ""}, nil, "ROOMCAST_JWT_SECRET"},
		{"secret and public key", map[string]string{"ROOMCAST_JWT_SECRET": leak + "-long-enough-0123456789", "ROOMCAST_JWT_PUBLIC_KEY_FILE": garbageKey}, nil, "ROOMCAST_JWT_PUBLIC_KEY_FILE"},
		{"missing public key file", map[string]string{"ROOMCAST_JWT_SECRET": "", "ROOMCAST_JWT_PUBLIC_KEY_FILE": "/nonexistent/key.pem"}, nil, "ROOMCAST_JWT_PUBLIC_KEY_FILE"},
		{"rate zero", map[string]string{"ROOMCAST_RATE": "0"}, nil, "ROOMCAST_RATE"},
		{"max message bytes", map[string]string{"ROOMCAST_MAX_MESSAGE_BYTES": "64k"}, nil, "ROOMCAST_MAX_MESSAGE_BYTES"},
		{"send queue zero", map[string]string{"ROOMCAST_SEND_QUEUE": "0"}, nil, "ROOMCAST_SEND_QUEUE"},
		{"send queue bytes under 64 KiB", map[string]string{"ROOMCAST_SEND_QUEUE_BYTES": "65535"}, nil, "ROOMCAST_SEND_QUEUE_BYTES"},
		{"send queue bytes over 1 GiB", nil, []string{"-send-queue-bytes", "1073741825"}, "ROOMCAST_SEND_QUEUE_BYTES"},
		{"send queue bytes not an integer", map[string]string{"ROOMCAST_SEND_QUEUE_BYTES": "8MiB"}, nil, "ROOMCAST_SEND_QUEUE_BYTES"},
		{"history size negative", map[string]string{"ROOMCAST_HISTORY_SIZE": "-1"}, nil, "ROOMCAST_HISTORY_SIZE"},
		{"history size over the bound", map[string]string{"ROOMCAST_HISTORY_SIZE": "100001"}, nil, "ROOMCAST_HISTORY_SIZE"},
		{"history ttl under a second", map[string]string{"ROOMCAST_HISTORY_TTL": "500ms"}, nil, "ROOMCAST_HISTORY_TTL"},
		{"history ttl not a duration", nil, []string{"-history-ttl", "1 day"}, "-history-ttl"},
		{"max state bytes under 1 KiB", map[string]string{"ROOMCAST_MAX_STATE_BYTES": "1023"}, nil, "ROOMCAST_MAX_STATE_BYTES"},
		{"max conns negative", map[string]string{"ROOMCAST_MAX_CONNS": "-1"}, nil, "ROOMCAST_MAX_CONNS"},
		{"max conns per ip not a number", map[string]string{"ROOMCAST_MAX_CONNS_PER_IP": "ten"}, nil, "ROOMCAST_MAX_CONNS_PER_IP"},
		{"read timeout under 100ms", map[string]string{"ROOMCAST_READ_TIMEOUT": "50ms"}, nil, "ROOMCAST_READ_TIMEOUT"},
		{"max doc bytes under 64 KiB", map[string]string{"ROOMCAST_MAX_DOC_BYTES": "65535"}, nil, "ROOMCAST_MAX_DOC_BYTES"},
		{"max doc bytes over 512 MiB", map[string]string{"ROOMCAST_MAX_DOC_BYTES": "536870913", "ROOMCAST_MAX_INFLIGHT_BYTES": "1073741824"}, nil, "ROOMCAST_MAX_DOC_BYTES"},
		{"max doc bytes flag not an integer", nil, []string{"-max-doc-bytes", "64MiB"}, "-max-doc-bytes"},
		{"max inflight bytes under 64 KiB", map[string]string{"ROOMCAST_MAX_INFLIGHT_BYTES": "1000"}, nil, "ROOMCAST_MAX_INFLIGHT_BYTES"},
		{"max inflight bytes under max doc bytes", map[string]string{"ROOMCAST_MAX_DOC_BYTES": "2097152", "ROOMCAST_MAX_INFLIGHT_BYTES": "1048576"}, nil, "ROOMCAST_MAX_INFLIGHT_BYTES"},
		{"max inflight bytes under the default max doc bytes", map[string]string{"ROOMCAST_MAX_INFLIGHT_BYTES": "1048576"}, nil, "ROOMCAST_MAX_INFLIGHT_BYTES"},
		{"version interval under a second", map[string]string{"ROOMCAST_VERSION_INTERVAL": "500ms"}, nil, "ROOMCAST_VERSION_INTERVAL"},
		{"version interval over a week", map[string]string{"ROOMCAST_VERSION_INTERVAL": "169h"}, nil, "ROOMCAST_VERSION_INTERVAL"},
		{"version interval not a duration", nil, []string{"-version-interval", "10"}, "-version-interval"},
		{"versions zero", map[string]string{"ROOMCAST_VERSIONS": "0"}, nil, "ROOMCAST_VERSIONS"},
		{"versions over the bound", map[string]string{"ROOMCAST_VERSIONS": "10001"}, nil, "ROOMCAST_VERSIONS"},
		{"negative leave grace", map[string]string{"ROOMCAST_LEAVE_GRACE": "-1s"}, nil, "ROOMCAST_LEAVE_GRACE"},
		{"bad origin", map[string]string{"ROOMCAST_ALLOWED_ORIGINS": "https://ok.example,ftp://files.example"}, nil, "ROOMCAST_ALLOWED_ORIGINS"},
		{"bad dev", map[string]string{"ROOMCAST_DEV": "maybe"}, nil, "ROOMCAST_DEV"},
		{"bad dev flag", nil, []string{"-dev=maybe"}, "-dev"},
		{"unknown flag", nil, []string{"-no-such-setting"}, "-no-such-setting"},
		{"jwks url not a url", map[string]string{"ROOMCAST_JWT_JWKS_URL": "https://idp.example/jwks.json,idp.example/jwks.json"}, nil, "ROOMCAST_JWT_JWKS_URL"},
		{"jwks url ftp", nil, []string{"-jwt-jwks-url", "ftp://idp.example/jwks.json"}, "-jwt-jwks-url"},
		{"jwks url and public key", map[string]string{"ROOMCAST_JWT_SECRET": "", "ROOMCAST_JWT_JWKS_URL": "https://idp.example/jwks.json", "ROOMCAST_JWT_PUBLIC_KEY_FILE": garbageKey}, nil, "ROOMCAST_JWT_JWKS_URL"},
		{"claims unknown key", map[string]string{"ROOMCAST_JWT_CLAIMS": "name:nickname,role:https://app/role"}, nil, "ROOMCAST_JWT_CLAIMS"},
		{"claims without a claim", map[string]string{"ROOMCAST_JWT_CLAIMS": "rooms"}, nil, "ROOMCAST_JWT_CLAIMS"},
		{"public key file not a key", map[string]string{"ROOMCAST_JWT_SECRET": "", "ROOMCAST_JWT_PUBLIC_KEY_FILE": garbageKey}, nil, "ROOMCAST_JWT_PUBLIC_KEY_FILE"},
		{"redis url with password", map[string]string{"ROOMCAST_REDIS_URL": "http://user:" + leak + "@cache:6379/0"}, nil, "ROOMCAST_REDIS_URL"},
		{"cluster node without a port", map[string]string{"ROOMCAST_REDIS_URL": "redis-cluster://user:" + leak + "@cache-1:6379,cache-2"}, nil, "ROOMCAST_REDIS_URL"},
		{"cluster url with a database", map[string]string{"ROOMCAST_REDIS_URL": "redis-cluster://cache-1:6379/0"}, nil, "ROOMCAST_REDIS_URL"},
		{"cluster url with an unknown option", map[string]string{"ROOMCAST_REDIS_URL": "rediss-cluster://user:" + leak + "@cache-1:6379?no_such_option=1"}, nil, "ROOMCAST_REDIS_URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, append([]string{"-addr", "127.0.0.1:0"}, c.args...)...)
			env := []string{"ROOMCAST_JWT_SECRET=" + testserver.Secret}
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "ROOMCAST_") {
					env = append(env, kv)
				}
			}
			for k, v := range c.env {
				env = append(env, k+"="+v)
			}
			cmd.Env = env
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
				t.Fatalf("exit: %v, want a non-zero exit code\nstderr: %s", err, stderr.String())
			}
			line := strings.TrimRight(stderr.String(), "\n")
			if line == "" || strings.Contains(line, "\n") {
				t.Fatalf("stderr is not one line:\n%s", stderr.String())
			}
			if !strings.Contains(line, c.names) {
				t.Fatalf("stderr %q does not name %s", line, c.names)
			}
			if strings.Contains(line+stdout.String(), leak) || strings.Contains(line+stdout.String(), testserver.Secret) {
				t.Fatalf("the output shows a secret: %q", line)
			}
		})
	}
}
