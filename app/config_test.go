package main

import "testing"

// TestDevListensOnLoopback: -dev serves /dev/token, which signs a token
// for anyone, so without an address it listens on this machine only.
func TestDevListensOnLoopback(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	secret := []string{"ROOMCAST_JWT_SECRET", "0123456789abcdef0123456789abcdef"}
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"dev", []string{"-dev"}, nil, "127.0.0.1:8080"},
		{"dev from env", nil, []string{"ROOMCAST_DEV", "true"}, "127.0.0.1:8080"},
		{"dev with an address", []string{"-dev", "-addr", ":9000"}, nil, ":9000"},
		{"dev with an address in env", []string{"-dev"}, []string{"ROOMCAST_ADDR", "0.0.0.0:8080"}, "0.0.0.0:8080"},
		{"not dev", nil, secret, ":8080"},
	} {
		cfg, err := loadConfig(tc.args, env(tc.env...))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if cfg.Addr != tc.want {
			t.Errorf("%s: listens on %q, want %q", tc.name, cfg.Addr, tc.want)
		}
	}
}

// A postgres store may be used with Redis (written behind it); a sqlite
// file may not; STORE_DELAY stays within its bounds.
func TestStoreWithRedis(t *testing.T) {
	base := map[string]string{
		"ROOMCAST_JWT_SECRET": "0123456789abcdef0123456789abcdef",
		"ROOMCAST_REDIS_URL":  "redis://127.0.0.1:6379/0",
	}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		valid bool
	}{
		{"postgres", map[string]string{"ROOMCAST_STORE": "postgres://u@h:5432/db"}, true},
		{"postgres with a delay", map[string]string{"ROOMCAST_STORE": "postgres://u@h:5432/db", "ROOMCAST_STORE_DELAY": "500ms"}, true},
		{"delay too short", map[string]string{"ROOMCAST_STORE": "postgres://u@h:5432/db", "ROOMCAST_STORE_DELAY": "10ms"}, false},
		{"delay too long", map[string]string{"ROOMCAST_STORE": "postgres://u@h:5432/db", "ROOMCAST_STORE_DELAY": "1m"}, false},
		{"sqlite", map[string]string{"ROOMCAST_STORE": "sqlite:x.db"}, false},
		{"none", nil, true},
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
		if tc.valid && tc.env["ROOMCAST_STORE_DELAY"] == "" && cfg.StoreDelay.String() != "2s" {
			t.Errorf("%s: STORE_DELAY %s, want 2s", tc.name, cfg.StoreDelay)
		}
	}
}
