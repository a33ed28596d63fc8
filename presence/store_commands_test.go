package presence

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomcast/roomcast/tests/redisproc"
)

// commandStats reads INFO commandstats: calls per command, counting the
// commands that scripts call as Redis does.
func commandStats(t *testing.T, c *redis.Client) map[string]int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok || len(name) == len(line) {
			continue
		}
		n, err := strconv.ParseInt(rest[:strings.IndexByte(rest+",", ',')], 10, 64)
		if err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
		out[name] = n
	}
	return out
}

// cost is what one store call cost Redis.
type cost struct {
	roundTrips int64            // EVALSHA calls: one per script run
	commands   int64            // commands the scripts called
	perCommand map[string]int64 // the same, by command
}

func (c cost) String() string {
	names := make([]string, 0, len(c.perCommand))
	for n := range c.perCommand {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s×%d", n, c.perCommand[n]))
	}
	return fmt.Sprintf("%d commands in %d round trip(s): %s", c.commands, c.roundTrips, strings.Join(parts, " "))
}

// measure runs f and returns the commandstats delta. The INFO calls of the
// measurement itself are left out; EVALSHA is counted as the round trip,
// not as a command.
func measure(t *testing.T, c *redis.Client, f func()) cost {
	t.Helper()
	before := commandStats(t, c)
	f()
	after := commandStats(t, c)
	out := cost{perCommand: map[string]int64{}}
	for name, n := range after {
		d := n - before[name]
		switch {
		case d == 0, name == "info":
		case name == "evalsha" || name == "eval":
			out.roundTrips += d
		default:
			out.commands += d
			out.perCommand[name] = d
		}
	}
	return out
}

// A join costs Redis 4 commands in one round trip (5 with the EVALSHA
// itself, as INFO commandstats counts them; 5 + 1 for the first join of a
// room on an instance, which makes sure the sweep index has it: the Keeper
// tells the store when it holds another session in the room), and the
// same in a room of 1 member as in a room of 1,000; a leave at most 6 (4
// unless the user's last connection starts a leave grace). Counted as INFO
// commandstats counts them: every command a script calls (TIME included);
// the EVALSHA that runs the script is the round trip and not counted as a
// command.
func TestRedisStoreCommandsPerJoinAndLeave(t *testing.T) {
	srv := redisproc.Start(t)
	c := srv.Client(t)
	ctx := context.Background()

	type step struct {
		name string
		max  int64
		run  func(s Store, room string) error
	}
	join := func(conn, user string) func(Store, string) error {
		return func(s Store, room string) error {
			_, err := s.Join(ctx, Session{Room: room, Conn: conn, User: user, Name: "Visitor", Indexed: true})
			return err
		}
	}
	firstJoin := func(conn, user string) func(Store, string) error {
		return func(s Store, room string) error {
			_, err := s.Join(ctx, Session{Room: room, Conn: conn, User: user, Name: "Visitor"})
			return err
		}
	}
	leave := func(conn, user string) func(Store, string) error {
		return func(s Store, room string) error { return s.Leave(ctx, room, conn, user) }
	}
	cases := []struct {
		name  string
		grace time.Duration
		steps []step
	}{
		{"no leave grace", 0, []step{
			{"first join of the room on an instance", 5, firstJoin("v0", "visitor0")},
			{"join of a new member", 4, join("v1", "visitor")},
			{"join of a second tab", 4, join("v2", "visitor")},
			{"leave of one of two tabs", 4, leave("v2", "visitor")},
			{"leave of the last tab", 4, leave("v1", "visitor")},
			{"leave of an unknown conn", 2, leave("v1", "visitor")},
		}},
		{"leave grace", time.Minute, []step{
			{"join of a new member", 4, join("v1", "visitor")},
			{"leave of the last tab (grace starts)", 6, leave("v1", "visitor")},
			{"join back within the grace", 4, join("v2", "visitor")},
			{"leave of the last tab again", 6, leave("v2", "visitor")},
		}},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewRedisStore(c, RedisOptions{Options: Options{LeaveGrace: tc.grace}, Prefix: fmt.Sprintf("cost%d:", ci)})
			sizes := []int{1, 1000}
			for _, size := range sizes {
				room := fmt.Sprint("room-", size)
				for i := range size {
					if _, err := s.Join(ctx, Session{Room: room, Conn: fmt.Sprint("base-", i), User: fmt.Sprint("u", i), Name: "Member"}); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Load every script first: NOSCRIPT retries are not the steady
			// state. And sweep, as the keeper does every second: the sweep
			// reads the Redis clock, which the other scripts are then given
			// instead of calling TIME.
			for _, st := range tc.steps {
				if err := st.run(s, "warm-up"); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Sweep(ctx); err != nil {
				t.Fatal(err)
			}
			for _, st := range tc.steps {
				var costs []cost
				for _, size := range sizes {
					room := fmt.Sprint("room-", size)
					var err error
					got := measure(t, c, func() { err = st.run(s, room) })
					if err != nil {
						t.Fatalf("%s in a room of %d: %v", st.name, size, err)
					}
					t.Logf("%s, room of %d: %v", st.name, size, got)
					if got.roundTrips != 1 || got.commands > st.max {
						t.Errorf("%s in a room of %d: %v; want at most %d commands in 1 round trip", st.name, size, got, st.max)
					}
					costs = append(costs, got)
				}
				if costs[0].String() != costs[1].String() {
					t.Errorf("%s costs %v in a room of 1 but %v in a room of 1,000", st.name, costs[0], costs[1])
				}
			}
		})
	}
}
