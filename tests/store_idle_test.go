package tests

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/tests/redisproc"
	"github.com/roomcast/roomcast/tests/testserver"
)

// TestStoreIdleRoomsLeaveMemory: one instance on its store with TTLs of
// 2 s. 10,000 rooms get stored messages (some a state, a few a Yjs
// document), then idle past the TTLs: the rooms leave memory, the
// process's heap returns near where it started, and every room loads back
// from the store with the same epoch, seq, messages, state and document.
func TestStoreIdleRoomsLeaveMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 rooms")
	}
	t.Parallel()
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			idleRoomsLeaveMemory(t, nil, map[string]string{
				"ROOMCAST_STORE":       k.url(t),
				"ROOMCAST_HISTORY_TTL": "2s",
				"ROOMCAST_DOC_TTL":     "2s",
			})
		})
	}
	// Redis + PostgreSQL: the rooms leave Redis too (its used_memory goes
	// back near where it started and it holds none of their keys).
	t.Run("redis+postgres", func(t *testing.T) {
		r := redisproc.Start(t)
		idleRoomsLeaveMemory(t, r, writeBehindEnv(t, map[string]string{
			"ROOMCAST_REDIS_URL":   r.URL(),
			"ROOMCAST_HISTORY_TTL": "2s",
			"ROOMCAST_DOC_TTL":     "2s",
		}))
	})
}

// redisMemory is used_memory of INFO memory and the number of keys.
func redisMemory(t *testing.T, rc *redis.Client) (used, keys int64) {
	t.Helper()
	ctx := context.Background()
	info, err := rc.Info(ctx, "memory").Result()
	if err != nil {
		t.Fatalf("INFO memory: %v", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			if used, err = strconv.ParseInt(v, 10, 64); err != nil {
				t.Fatalf("INFO memory %q: %v", line, err)
			}
		}
	}
	if used == 0 {
		t.Fatalf("no used_memory in INFO memory:\n%s", info)
	}
	if keys, err = rc.DBSize(ctx).Result(); err != nil {
		t.Fatalf("DBSIZE: %v", err)
	}
	return used, keys
}

const (
	idleRooms     = 10_000
	idleMessages  = 2   // stored messages per room
	idleStateEach = 100 // every 100th room gets a state
	idleDocEach   = 500 // every 500th room gets a Yjs document
	idleSampleGap = idleRooms / 200
)

func idleRoom(i int) string { return fmt.Sprintf("idle-%05d", i) }

// idleRoomsLeaveMemory runs the scenario on one instance with env, on the
// private Redis r if not nil.
func idleRoomsLeaveMemory(t *testing.T, r *redisproc.Server, env map[string]string) {
	s := testserver.Start(t, testserver.Options{Env: env})
	heap := func() float64 { return metric(t, s, "go_memstats_heap_inuse_bytes") }
	heap0, rss0 := heap(), rssBytes(t, s.Pid())
	var rc *redis.Client
	var redis0, keys0 int64
	if r != nil {
		rc = r.Client(t)
		redis0, keys0 = redisMemory(t, rc)
	}

	// The rooms, written through the HTTP API by 16 writers; a writer
	// gives a room its state and document right after its messages, and
	// reads a sampled room back at once, while it is still in memory.
	type kept struct {
		msgs  messagesPage
		state statePage
		doc   []byte
	}
	update := makeUpdate(t, "a document kept while its room idles", map[string]any{"k": "v"})
	var mu sync.Mutex
	before := map[string]kept{}
	var heapPeak, rssPeak atomic.Int64
	sampling := make(chan struct{})
	go func() {
		for {
			select {
			case <-sampling:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if _, b, err := testserver.Get(t.Context(), s.URL+"/metrics", ""); err == nil {
				if h := metricIn(b, "go_memstats_heap_inuse_bytes"); int64(h) > heapPeak.Load() {
					heapPeak.Store(int64(h))
				}
			}
			if r := rssBytes(t, s.Pid()); r > rssPeak.Load() {
				rssPeak.Store(r)
			}
		}
	}()
	start := time.Now()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for !t.Failed() {
				i := int(next.Add(1)) - 1
				if i >= idleRooms {
					return
				}
				r := idleRoom(i)
				for m := 0; m < idleMessages; m++ {
					body := fmt.Sprintf(`{"data":{"room":%d,"m":%d,"stroke":"%s"}}`, i, m, strings.Repeat("x", 60))
					req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/rooms/"+r+"/messages", strings.NewReader(body))
					req.Header.Set("Authorization", "Bearer "+testserver.APIKey)
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						t.Errorf("POST to %s: %v", r, err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						t.Errorf("POST to %s: HTTP %d", r, resp.StatusCode)
						return
					}
				}
				if i%idleDocEach == 0 {
					if st, b := postDoc(t, s, r, testserver.APIKey, update); st != http.StatusNoContent && st != http.StatusOK {
						t.Errorf("POST doc of %s: %d %s", r, st, b)
						return
					}
				}
				if i%idleStateEach == 0 {
					c := testserver.Join(t, s.WS, r, "keeper", "")
					a := sendState(t, c, idleMessages, map[string]any{"room": i})
					c.Close()
					if a.Type != "ack" {
						t.Errorf("state of %s: %s", r, a.Raw)
						return
					}
				}
				if i%idleSampleGap != 0 {
					continue
				}
				k := kept{msgs: getMessages(t, s, r, "since=0&limit=1000"), state: getState(t, s, r)}
				if i%idleDocEach == 0 {
					_, _, k.doc = binaryCall(t, http.MethodGet, s.URL+"/api/rooms/"+r+"/doc", testserver.APIKey, nil)
				}
				if k.msgs.Seq != idleMessages || len(k.msgs.Messages) != idleMessages || (i%idleStateEach == 0) != (k.state.State != nil) {
					t.Errorf("%s as written: %+v, state %s", r, k.msgs, k.state.raw)
					return
				}
				mu.Lock()
				before[r] = k
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	wrote := time.Since(start)
	close(sampling)
	if t.Failed() {
		return
	}
	heap1, rss1 := float64(heapPeak.Load()), rssPeak.Load()
	var redis1, keys1 int64
	if rc != nil {
		redis1, keys1 = redisMemory(t, rc)
	}

	// Past the TTLs (2 s) and a sweep (every 1 s): the rooms are gone
	// from memory.
	time.Sleep(4 * time.Second)
	idleAt := time.Now()
	if rc != nil {
		// Saved and gone from Redis: what is left is the instance's own
		// (its heartbeat), not the rooms'.
		var redis2, keys2 int64
		eventually(t, 90*time.Second, "Redis back near its start", func() error {
			redis2, keys2 = redisMemory(t, rc)
			if keys2 > keys0+10 || redis2 > redis0+2<<20 {
				return fmt.Errorf("%d keys and %.1f MiB used; %d keys and %.1f MiB at the start", keys2, float64(redis2)/(1<<20), keys0, float64(redis0)/(1<<20))
			}
			return nil
		})
		t.Logf("Redis: %.1f MiB used (%d keys) at the start, %.1f MiB (%d keys) after writing, %.1f MiB (%d keys) %v after the rooms idled (saved, then past the TTLs)",
			float64(redis0)/(1<<20), keys0, float64(redis1)/(1<<20), keys1, float64(redis2)/(1<<20), keys2, time.Since(idleAt).Round(100*time.Millisecond))
	}
	var heap2 float64
	eventually(t, 150*time.Second, "the heap back near its start", func() error {
		heap2 = heap()
		if heap2 > heap0+8<<20 {
			return fmt.Errorf("heap in use %.1f MiB, %.1f MiB at the start", heap2/(1<<20), heap0/(1<<20))
		}
		return nil
	})
	rss2 := rssBytes(t, s.Pid())

	t.Logf("%d rooms (%d stored messages, %d states, %d documents) written in %v (%.0f messages/s)",
		idleRooms, idleRooms*idleMessages, idleRooms/idleStateEach, idleRooms/idleDocEach, wrote.Round(10*time.Millisecond), float64(idleRooms*idleMessages)/wrote.Seconds())
	t.Logf("heap in use: %.1f MiB at the start, %.1f MiB at most while writing, %.1f MiB %v after they idled",
		heap0/(1<<20), heap1/(1<<20), heap2/(1<<20), time.Since(idleAt).Round(100*time.Millisecond))
	t.Logf("RSS: %.1f MiB at the start, %.1f MiB at most while writing, %.1f MiB after they idled",
		float64(rss0)/(1<<20), float64(rss1)/(1<<20), float64(rss2)/(1<<20))

	// Every sampled room loads back as it was.
	loadStart := time.Now()
	for i := 0; i < idleRooms; i += idleSampleGap {
		r := idleRoom(i)
		want := before[r]
		got := getMessages(t, s, r, "since=0&limit=1000")
		if got.Epoch != want.msgs.Epoch || got.Seq != want.msgs.Seq || fmt.Sprint(frameStrings(got)) != fmt.Sprint(frameStrings(want.msgs)) {
			t.Fatalf("%s loaded back: %+v, was %+v", r, got, want.msgs)
		}
		if st := getState(t, s, r); compactJSON([]byte(st.raw)) != compactJSON([]byte(want.state.raw)) {
			t.Fatalf("%s state loaded back: %s, was %s", r, st.raw, want.state.raw)
		}
		if want.doc != nil {
			if _, _, doc := binaryCall(t, http.MethodGet, s.URL+"/api/rooms/"+r+"/doc", testserver.APIKey, nil); !bytes.Equal(doc, want.doc) {
				t.Fatalf("%s document loaded back: %d bytes, was %d", r, len(doc), len(want.doc))
			}
		}
	}
	t.Logf("%d idle rooms loaded back in %v", len(before), time.Since(loadStart).Round(time.Millisecond))
	// The store holds every room, each once.
	stored, pages := storedRooms(t, s, 1000)
	seen := map[string]bool{}
	for _, sr := range stored {
		if strings.HasPrefix(sr.Room, "idle-") {
			seen[sr.Room] = true
		}
	}
	if len(stored) != idleRooms || len(seen) != idleRooms {
		t.Fatalf("the store lists %d rooms (%d distinct) in %d pages, want %d", len(stored), len(seen), pages, idleRooms)
	}
	if rss2 > rss0+64<<20 {
		t.Errorf("RSS %.1f MiB after the rooms idled, %.1f MiB at the start", float64(rss2)/(1<<20), float64(rss0)/(1<<20))
	}
}

func frameStrings(p messagesPage) []string {
	out := make([]string, len(p.Messages))
	for i, m := range p.Messages {
		out[i] = compactJSON(m)
	}
	return out
}
