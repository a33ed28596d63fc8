package webhook

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// item is one queued event as the deliverer holds it: a record of the
// queue (rooms/wire webhook.lua), with where it sits.
type item struct {
	part     int    // the queue's partition (0 without Redis Cluster)
	key      string // the event's key in its queue
	attempts int    // failed attempts so far
	created  int64  // unix ms the event happened
	targets  []int  // indexes of the URLs still to deliver to; nil all
	marker   string // room key that points at the event while it waits
	typ      string
	room     string
	body     []byte
}

// id is the event's webhook-id: the same on every attempt, unique in the
// cluster (a queue's keys restart after Redis loses the queue; the time
// they were made does not).
func (it item) id() string {
	return "msg_" + strconv.FormatInt(it.created, 36) + "_" + strconv.Itoa(it.part) + "_" + strings.TrimLeft(it.key, "0")
}

// record encodes it as the queue stores it.
func (it item) record() string {
	t := make([]string, len(it.targets))
	for i, v := range it.targets {
		t[i] = strconv.Itoa(v)
	}
	return strconv.Itoa(it.attempts) + "\n" + strconv.FormatInt(it.created, 10) + "\n" + strings.Join(t, ",") +
		"\n" + it.marker + "\n" + it.typ + "\n" + it.room + "\n" + string(it.body)
}

// parseRecord decodes a queue record of key in partition part.
func parseRecord(part int, key, rec string) (item, error) {
	f := strings.SplitN(rec, "\n", 7)
	if len(f) != 7 {
		return item{}, errors.New("malformed webhook record")
	}
	it := item{part: part, key: key, marker: f[3], typ: f[4], room: f[5], body: []byte(f[6])}
	var err error
	if it.attempts, err = strconv.Atoi(f[0]); err != nil {
		return item{}, fmt.Errorf("malformed webhook record attempts: %w", err)
	}
	if it.created, err = strconv.ParseInt(f[1], 10, 64); err != nil {
		return item{}, fmt.Errorf("malformed webhook record time: %w", err)
	}
	if f[2] != "" {
		for _, s := range strings.Split(f[2], ",") {
			n, err := strconv.Atoi(s)
			if err != nil {
				return item{}, fmt.Errorf("malformed webhook record targets: %w", err)
			}
			it.targets = append(it.targets, n)
		}
	}
	return it, nil
}
