package webhook

import (
	"testing"
	"time"
)

// The Standard Webhooks specification's published example
// (standard-webhooks/standard-webhooks, libraries' test vectors).
func TestSignStandardWebhooksVector(t *testing.T) {
	s, err := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := s.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
}

func TestParseSecretRefusesBadSecrets(t *testing.T) {
	for _, s := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_not base64!", "whsec_c2hvcnQ="} {
		if _, err := ParseSecret(s); err == nil {
			t.Errorf("ParseSecret(%q) accepted", s)
		}
	}
}

func TestBackoffSchedule(t *testing.T) {
	b := Backoff{} // 1 s doubling, at most 10 min
	for n := 1; n <= 40; n++ {
		ceiling := time.Second << min(n-1, 20)
		ceiling = min(ceiling, 10*time.Minute)
		for range 50 {
			w := b.Wait(n)
			if w < ceiling/2 || w > ceiling {
				t.Fatalf("wait after attempt %d = %v, want within [%v, %v]", n, w, ceiling/2, ceiling)
			}
		}
	}
	if w := b.Wait(1); w > time.Second {
		t.Fatalf("first retry after %v, want about 1 s", w)
	}
	// The waits over 24 h: at most 10 min apart, so about 150 attempts.
	var total time.Duration
	n := 0
	for total < 24*time.Hour {
		n++
		total += b.ceiling(n)
	}
	if n < 140 || n > 160 {
		t.Fatalf("%d attempts fit in 24 h, want about 150", n)
	}
	short := Backoff{Base: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	for n := 1; n <= 10; n++ {
		if w := short.Wait(n); w > 40*time.Millisecond {
			t.Fatalf("wait %v past Max", w)
		}
	}
}
