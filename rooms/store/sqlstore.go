package store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// The SQL both databases share. Statements use $1… placeholders (SQLite
// reads them as positional too), types both understand (text, bigint,
// blob/bytea) and ON CONFLICT upserts; times are unix microseconds.

// querier is a transaction of either database as the shared SQL uses it.
type querier interface {
	exec(ctx context.Context, sql string, args ...any) error
	// queryRow's Scan returns errNoRows when the query found none.
	queryRow(ctx context.Context, sql string, args ...any) scanner
	query(ctx context.Context, sql string, args ...any) (rows, error)
}

type scanner interface{ Scan(dest ...any) error }

type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// txn is one transaction: read-only (reads see one snapshot) or the
// writer's.
type txn interface {
	querier
	commit(ctx context.Context) error
	rollback()
}

// database is what differs between SQLite and PostgreSQL.
type database interface {
	begin(ctx context.Context, write bool) (txn, error)
	// lockRoom is appended to the query that reads a room's row before
	// changing it: PostgreSQL locks the row against other instances'
	// writers; SQLite has one writer and needs nothing.
	lockRoom() string
	// retryable says whether a failed transaction may simply run again
	// (a deadlock or serialization failure between instances).
	retryable(err error) bool
	// unreachable says whether err is the database being out of reach
	// (a dropped connection, a server restarting or refusing
	// connections) rather than anything the transaction did.
	unreachable(err error) bool
	ping(ctx context.Context) error
	close() error
}

var errNoRows = errors.New("store: no rows")

// sqlStore is the Store both implementations are: the shared SQL over a
// database, with a group-commit writer in front of its writes.
type sqlStore struct {
	db     database
	w      *writer
	closed atomic.Bool

	// What the writer committed, for Stats.
	commits, ops, written atomic.Int64
}

// Stats are counters of what a store committed since it was opened.
type Stats struct {
	Commits int64 // transactions
	Ops     int64 // ops applied
	// Written is the bytes of frames, states and document data the
	// committed statements carried (not the database's own overhead).
	Written int64
}

// StatsOf returns st's counters, or zeros for a store that keeps none.
func StatsOf(st Store) Stats {
	if s, ok := st.(interface{ Stats() Stats }); ok {
		return s.Stats()
	}
	return Stats{}
}

// Stats returns what the writer committed so far.
func (s *sqlStore) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Ops: s.ops.Load(), Written: s.written.Load()}
}

// countingTx counts the bytes of the binary arguments its statements carry.
type countingTx struct {
	txn
	bytes int64
}

func (t *countingTx) exec(ctx context.Context, sql string, args ...any) error {
	for _, a := range args {
		if b, ok := a.([]byte); ok {
			t.bytes += int64(len(b))
		}
	}
	return t.txn.exec(ctx, sql, args...)
}

func (s *sqlStore) start(db database, o Options) {
	s.db = db
	s.w = newWriter(s.commit, o)
}

// Write applies ops in order, atomically, and returns once they are
// committed. If ctx ends first, Write returns ctx's error: the batch is
// then not applied when the writer had not taken it yet, and applied
// anyway (durably) when it was already committing. ops' Data must not
// change until Write returns.
func (s *sqlStore) Write(ctx context.Context, ops ...Op) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if len(ops) == 0 {
		return ctx.Err()
	}
	for i := range ops {
		if err := checkOp(&ops[i]); err != nil {
			return err
		}
	}
	// The writer may still read the batch after a cancelled Write
	// returned: it gets its own copy of the slice.
	return s.w.write(ctx, append([]Op(nil), ops...))
}

// Close stops the writer after the batches already handed to it and
// closes the database.
func (s *sqlStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.w.close()
	return s.db.close()
}

// Ping checks that the database answers.
func (s *sqlStore) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return s.db.ping(ctx)
}

func checkOp(op *Op) error {
	if op.Kind == OpWebhookPut || op.Kind == OpWebhookDelete {
		return checkWebhookOp(op)
	}
	if op.Room == "" {
		return fmt.Errorf("store: op %d without a room", op.Kind)
	}
	switch op.Kind {
	case OpMessage, OpState, OpDocUpdate, OpDocBase, OpReset:
		if op.Epoch == "" {
			return fmt.Errorf("store: op %d on room %q without an epoch", op.Kind, op.Room)
		}
	case OpDelete:
	case OpVersion:
		if op.Version != VersionDoc && op.Version != VersionState {
			return fmt.Errorf("store: version of unknown kind %q on room %q", op.Version, op.Room)
		}
	case OpSnapshot:
		if op.Snapshot == nil || op.Snapshot.Epoch == "" {
			return fmt.Errorf("store: snapshot of room %q without a room or an epoch", op.Room)
		}
	default:
		return fmt.Errorf("store: unknown op kind %d on room %q", op.Kind, op.Room)
	}
	if op.Seq > maxSeq || (op.Snapshot != nil && (op.Snapshot.Seq > maxSeq || op.Snapshot.Doc.Seq > maxSeq)) {
		return fmt.Errorf("store: seq of room %q past the database's integers", op.Room)
	}
	return nil
}

// maxSeq is the largest seq both databases' bigint holds.
const maxSeq = 1<<63 - 1

// reconnectFor is how long a group commit keeps trying while the database
// is out of reach: a pooled connection the server dropped, or a server
// back within a moment, costs the waiting writers that long, not a
// failure. Longer outages fail the group: its rooms' writers are told
// (unavailable, 1011) rather than held.
const reconnectFor = 2 * time.Second

// commit is the writer's commitFunc. Running a group again after a lost
// connection is safe even when its COMMIT went through unseen: the ops
// written again land as they did (a message or an update at a room's last
// seq replaces itself, older ones are ignored).
func (s *sqlStore) commit(ctx context.Context, batches [][]Op) (int, error) {
	var giveUp time.Time
	pause := 25 * time.Millisecond
	for attempt := 1; ; attempt++ {
		failed, err := s.commitOnce(ctx, batches)
		if err == nil || ctx.Err() != nil {
			return failed, err
		}
		if failed < 0 && s.db.unreachable(err) {
			if giveUp.IsZero() {
				giveUp = time.Now().Add(reconnectFor)
			}
			if time.Now().Add(pause).After(giveUp) {
				return failed, err
			}
			select {
			case <-ctx.Done():
				return failed, err
			case <-time.After(pause):
			}
			pause = min(2*pause, 400*time.Millisecond)
			continue
		}
		if attempt >= 3 || !s.db.retryable(err) {
			return failed, err
		}
	}
}

func (s *sqlStore) commitOnce(ctx context.Context, batches [][]Op) (int, error) {
	began, err := s.db.begin(ctx, true)
	if err != nil {
		return -1, fmt.Errorf("store: begin: %w", err)
	}
	tx := &countingTx{txn: began}
	now := time.Now().UnixMicro()
	n := 0
	for i, ops := range batches {
		n += len(ops)
		for _, op := range ops {
			if err := s.apply(ctx, tx, op, now); err != nil {
				tx.rollback()
				if !errors.Is(err, ErrEpoch) {
					err = fmt.Errorf("store: op %d on room %q: %w", op.Kind, op.Room, err)
				}
				return i, err
			}
		}
	}
	if err := tx.commit(ctx); err != nil {
		return -1, fmt.Errorf("store: commit: %w", err)
	}
	s.commits.Add(1)
	s.ops.Add(int64(n))
	s.written.Add(tx.bytes)
	return -1, nil
}

// roomRow is what the ops read of a room's row before changing it.
type roomRow struct {
	epoch      string
	seq        int64
	hasState   bool
	stateSeq   int64
	docEpoch   string
	docSeq     int64
	docBaseSeq int64
}

// readRoom reads (and on PostgreSQL locks) room's row, creating an empty
// one (epoch "") when the store holds none.
func (s *sqlStore) readRoom(ctx context.Context, q querier, room string, now int64) (roomRow, error) {
	sel := `SELECT epoch, seq, CASE WHEN state_data IS NULL THEN 0 ELSE 1 END, state_seq, doc_epoch, doc_seq, doc_base_seq
		FROM rooms WHERE room = $1` + s.db.lockRoom()
	var r roomRow
	var hasState int64
	scan := func() error {
		return q.queryRow(ctx, sel, room).Scan(&r.epoch, &r.seq, &hasState, &r.stateSeq, &r.docEpoch, &r.docSeq, &r.docBaseSeq)
	}
	err := scan()
	if errors.Is(err, errNoRows) {
		if err := q.exec(ctx, `INSERT INTO rooms (room, updated_at) VALUES ($1, $2) ON CONFLICT (room) DO NOTHING`, room, now); err != nil {
			return r, err
		}
		err = scan()
	}
	r.hasState = hasState != 0
	return r, err
}

func epochError(op Op, held string) error {
	return fmt.Errorf("%w: room %q is in %q, op %d is in %q", ErrEpoch, op.Room, held, op.Kind, op.Epoch)
}

func (s *sqlStore) apply(ctx context.Context, q querier, op Op, now int64) error {
	switch op.Kind {
	case OpMessage:
		r, err := s.readRoom(ctx, q, op.Room, now)
		if err != nil {
			return err
		}
		if r.epoch != "" && r.epoch != op.Epoch {
			return epochError(op, r.epoch)
		}
		// An older message already kept (a Write retried after its
		// context ended while it committed) neither moves the position
		// back nor changes. The room's last message written again is the
		// writer's new word on that seq: a commit whose outcome it never
		// learned (the connection dropped during COMMIT) counted as
		// failed, its sender was told so, and the seq went to the next
		// message.
		seq := max(r.seq, int64(op.Seq))
		if err := q.exec(ctx, `UPDATE rooms SET epoch = $2, seq = $3, updated_at = $4 WHERE room = $1`,
			op.Room, op.Epoch, seq, now); err != nil {
			return err
		}
		conflict := `DO NOTHING`
		if int64(op.Seq) == seq {
			conflict = `DO UPDATE SET frame = excluded.frame, exclude = excluded.exclude`
		}
		if err := q.exec(ctx, `INSERT INTO messages (room, seq, frame, exclude) VALUES ($1, $2, $3, $4) ON CONFLICT (room, seq) `+conflict,
			op.Room, int64(op.Seq), op.Data, op.Exclude); err != nil {
			return err
		}
		if op.Keep > 0 && seq > int64(op.Keep) {
			return q.exec(ctx, `DELETE FROM messages WHERE room = $1 AND seq <= $2`, op.Room, seq-int64(op.Keep))
		}
		return nil

	case OpState:
		r, err := s.readRoom(ctx, q, op.Room, now)
		if err != nil {
			return err
		}
		if r.epoch != "" && r.epoch != op.Epoch {
			return epochError(op, r.epoch)
		}
		if r.hasState && int64(op.Seq) < r.stateSeq {
			return nil
		}
		return q.exec(ctx, `UPDATE rooms SET epoch = $2, state_seq = $3, state_data = $4, state_bytes = $5, updated_at = $6 WHERE room = $1`,
			op.Room, op.Epoch, int64(op.Seq), nonNil(op.Data), int64(len(op.Data)), now)

	case OpDocUpdate:
		r, err := s.readRoom(ctx, q, op.Room, now)
		if err != nil {
			return err
		}
		if r.docEpoch != "" && r.docEpoch != op.Epoch {
			return epochError(op, r.docEpoch)
		}
		if int64(op.Seq) < r.docSeq || int64(op.Seq) <= r.docBaseSeq {
			return nil // kept already, or compacted into the base
		}
		// The last update written again replaces it, as a message does:
		// the writer counted the first write as failed.
		if err := q.exec(ctx, `UPDATE rooms SET doc_epoch = $2, doc_seq = $3, updated_at = $5,
			doc_bytes = doc_bytes + $4 - (SELECT COALESCE(SUM(length(msg)), 0) FROM doc_updates WHERE room = $1 AND seq = $3)
			WHERE room = $1`,
			op.Room, op.Epoch, int64(op.Seq), int64(len(op.Data)), now); err != nil {
			return err
		}
		return q.exec(ctx, `INSERT INTO doc_updates (room, seq, msg) VALUES ($1, $2, $3) ON CONFLICT (room, seq) DO UPDATE SET msg = excluded.msg`,
			op.Room, int64(op.Seq), op.Data)

	case OpDocBase:
		r, err := s.readRoom(ctx, q, op.Room, now)
		if err != nil {
			return err
		}
		if r.docEpoch == "" {
			return nil // no document (deleted meanwhile): nothing to compact
		}
		if r.docEpoch != op.Epoch {
			return epochError(op, r.docEpoch)
		}
		if int64(op.Seq) <= r.docBaseSeq {
			return nil // compacted past already
		}
		if err := q.exec(ctx, `DELETE FROM doc_updates WHERE room = $1 AND seq <= $2`, op.Room, int64(op.Seq)); err != nil {
			return err
		}
		return q.exec(ctx, `UPDATE rooms SET doc_epoch = $2, doc_seq = $3, doc_base_seq = $4, doc_base = $5,
			doc_bytes = $6 + (SELECT COALESCE(SUM(length(msg)), 0) FROM doc_updates WHERE room = $1), updated_at = $7
			WHERE room = $1`,
			op.Room, op.Epoch, max(r.docSeq, int64(op.Seq)), int64(op.Seq), nonNil(op.Data), int64(len(op.Data)), now)

	case OpReset:
		if err := q.exec(ctx, `INSERT INTO rooms (room, epoch, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (room) DO UPDATE SET epoch = excluded.epoch, seq = 0,
				state_seq = 0, state_data = NULL, state_bytes = 0,
				doc_epoch = '', doc_seq = 0, doc_base_seq = 0, doc_base = NULL, doc_bytes = 0,
				updated_at = excluded.updated_at`,
			op.Room, op.Epoch, now); err != nil {
			return err
		}
		return s.forgetHistory(ctx, q, op.Room)

	case OpDelete:
		for _, del := range []string{
			`DELETE FROM rooms WHERE room = $1`,
			`DELETE FROM messages WHERE room = $1`,
			`DELETE FROM doc_updates WHERE room = $1`,
			`DELETE FROM versions WHERE room = $1`,
		} {
			if err := q.exec(ctx, del, op.Room); err != nil {
				return err
			}
		}
		return nil

	case OpVersion:
		// Versions belong to the room, not to an epoch (a Reset keeps
		// them), so they are not checked against it.
		if err := q.exec(ctx, `INSERT INTO rooms (room, updated_at) VALUES ($1, $2)
			ON CONFLICT (room) DO UPDATE SET updated_at = excluded.updated_at`, op.Room, now); err != nil {
			return err
		}
		at := now
		if !op.At.IsZero() {
			at = op.At.UnixMicro()
		}
		if err := q.exec(ctx, `INSERT INTO versions (room, at, kind, seq, data, bytes) VALUES ($1, $2, $3, $4, $5, $6)`,
			op.Room, at, string(op.Version), int64(op.Seq), nonNil(op.Data), int64(len(op.Data))); err != nil {
			return err
		}
		if op.Keep > 0 {
			return q.exec(ctx, `DELETE FROM versions WHERE room = $1 AND id <
				(SELECT id FROM versions WHERE room = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)`,
				op.Room, int64(op.Keep-1))
		}
		return nil

	case OpSnapshot:
		return s.snapshot(ctx, q, op, now)

	case OpWebhookPut, OpWebhookDelete:
		return applyWebhook(ctx, q, op)
	}
	return fmt.Errorf("store: unknown op kind %d", op.Kind)
}

func (s *sqlStore) forgetHistory(ctx context.Context, q querier, room string) error {
	if err := q.exec(ctx, `DELETE FROM messages WHERE room = $1`, room); err != nil {
		return err
	}
	return q.exec(ctx, `DELETE FROM doc_updates WHERE room = $1`, room)
}

// snapshot replaces the room (but its versions) with op.Snapshot unless
// the store holds the same epoch at least as far, in the stream and in the
// document: the furthest copy wins. What the store already holds of the
// same epoch is not written again: a room saved every few seconds while
// it is edited costs its new messages and document updates, not its whole
// history window and document each time.
func (s *sqlStore) snapshot(ctx context.Context, q querier, op Op, now int64) error {
	snap := op.Snapshot
	r, err := s.readRoom(ctx, q, op.Room, now)
	if err != nil {
		return err
	}
	docAsFar := snap.Doc.Epoch == "" || (r.docEpoch == snap.Doc.Epoch && r.docSeq >= int64(snap.Doc.Seq))
	if r.epoch == snap.Epoch && r.seq >= int64(snap.Seq) && docAsFar {
		// A state sent after the last message moves no seq: kept when
		// later than the held one.
		if snap.State == nil || (r.hasState && r.stateSeq >= int64(snap.State.Seq)) || int64(snap.State.Seq) > r.seq {
			return nil
		}
		return q.exec(ctx, `UPDATE rooms SET state_seq = $2, state_data = $3, state_bytes = $4, updated_at = $5 WHERE room = $1`,
			op.Room, int64(snap.State.Seq), nonNil(snap.State.Data), int64(len(snap.State.Data)), now)
	}
	var stateSeq, stateBytes int64
	var stateData []byte // NULL: no state
	if snap.State != nil {
		stateSeq, stateData, stateBytes = int64(snap.State.Seq), nonNil(snap.State.Data), int64(len(snap.State.Data))
	}
	var doc Doc
	var docBase []byte // NULL: no document
	if snap.Doc.Epoch != "" {
		doc, docBase = snap.Doc, nonNil(snap.Doc.Base)
	}
	// The document's base is written again only when it changed: another
	// epoch or a compaction since the last save.
	sameBase := doc.Epoch != "" && r.docEpoch == doc.Epoch && r.docBaseSeq == int64(doc.BaseSeq) && r.docSeq <= int64(doc.Seq)
	if sameBase {
		err = q.exec(ctx, `UPDATE rooms SET epoch = $2, seq = $3,
				state_seq = $4, state_data = $5, state_bytes = $6,
				doc_seq = $7, doc_bytes = $8, updated_at = $9
			WHERE room = $1`,
			op.Room, snap.Epoch, int64(snap.Seq),
			stateSeq, stateData, stateBytes,
			int64(doc.Seq), doc.Bytes(), now)
	} else {
		err = q.exec(ctx, `UPDATE rooms SET epoch = $2, seq = $3,
				state_seq = $4, state_data = $5, state_bytes = $6,
				doc_epoch = $7, doc_seq = $8, doc_base_seq = $9, doc_base = $10, doc_bytes = $11,
				updated_at = $12
			WHERE room = $1`,
			op.Room, snap.Epoch, int64(snap.Seq),
			stateSeq, stateData, stateBytes,
			doc.Epoch, int64(doc.Seq), int64(doc.BaseSeq), docBase, doc.Bytes(),
			now)
	}
	if err != nil {
		return err
	}
	if err := s.snapshotMessages(ctx, q, op.Room, snap, r); err != nil {
		return err
	}
	return s.snapshotDocUpdates(ctx, q, op.Room, doc, r, sameBase)
}

// snapshotMessages makes the room's history snap's: within the epoch the
// store holds, the messages after its seq are added and those before the
// snapshot's window dropped; in another epoch the history is replaced.
func (s *sqlStore) snapshotMessages(ctx context.Context, q querier, room string, snap *Room, held roomRow) error {
	after := int64(-1) // replace: every message of snap
	if held.epoch == snap.Epoch && held.seq <= int64(snap.Seq) {
		after = held.seq
		// The window's start: everything older leaves (all of it when
		// the snapshot keeps no message).
		from := int64(snap.Seq) + 1
		if len(snap.Messages) > 0 {
			from = int64(snap.Messages[0].Seq)
		}
		if err := q.exec(ctx, `DELETE FROM messages WHERE room = $1 AND seq < $2`, room, from); err != nil {
			return err
		}
	} else if err := q.exec(ctx, `DELETE FROM messages WHERE room = $1`, room); err != nil {
		return err
	}
	for _, m := range snap.Messages {
		if int64(m.Seq) <= after {
			continue
		}
		if err := q.exec(ctx, `INSERT INTO messages (room, seq, frame, exclude) VALUES ($1, $2, $3, $4) ON CONFLICT (room, seq) DO NOTHING`,
			room, int64(m.Seq), m.Frame, m.Exclude); err != nil {
			return err
		}
	}
	return nil
}

// snapshotDocUpdates makes the room's document updates doc's: on the base
// the store holds, the updates after its seq are added; on a new base they
// are replaced.
func (s *sqlStore) snapshotDocUpdates(ctx context.Context, q querier, room string, doc Doc, held roomRow, sameBase bool) error {
	after := int64(-1)
	if sameBase {
		after = held.docSeq
	} else if err := q.exec(ctx, `DELETE FROM doc_updates WHERE room = $1`, room); err != nil {
		return err
	}
	for i, u := range doc.Updates {
		seq := int64(doc.BaseSeq) + 1 + int64(i)
		if seq <= after {
			continue
		}
		if err := q.exec(ctx, `INSERT INTO doc_updates (room, seq, msg) VALUES ($1, $2, $3) ON CONFLICT (room, seq) DO NOTHING`,
			room, seq, u); err != nil {
			return err
		}
	}
	return nil
}

// nonNil keeps a present but empty value apart from NULL (no state, no
// base).
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// read runs fn in a read-only transaction: every query of it sees one
// snapshot of the store.
func (s *sqlStore) read(ctx context.Context, fn func(q querier) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	tx, err := s.db.begin(ctx, false)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer tx.rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.commit(ctx)
}

// Load returns what is kept of room; Room.Epoch is "" when the store holds
// nothing of it.
func (s *sqlStore) Load(ctx context.Context, room string) (Room, error) {
	out := Room{Name: room}
	err := s.read(ctx, func(q querier) error {
		var hasState int64
		var seq, stateSeq, docSeq, docBaseSeq, updated int64
		var stateData, docBase []byte
		err := q.queryRow(ctx, `SELECT epoch, seq, CASE WHEN state_data IS NULL THEN 0 ELSE 1 END, state_seq, state_data,
				doc_epoch, doc_seq, doc_base_seq, doc_base, updated_at
			FROM rooms WHERE room = $1`, room).
			Scan(&out.Epoch, &seq, &hasState, &stateSeq, &stateData, &out.Doc.Epoch, &docSeq, &docBaseSeq, &docBase, &updated)
		if errors.Is(err, errNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		out.Seq = uint64(seq)
		out.Updated = time.UnixMicro(updated)
		if hasState != 0 {
			out.State = &State{Seq: uint64(stateSeq), Data: nonNil(stateData)}
		}
		rs, err := q.query(ctx, `SELECT seq, frame, exclude FROM messages WHERE room = $1 ORDER BY seq`, room)
		if err != nil {
			return err
		}
		for rs.Next() {
			var m Message
			var mseq int64
			if err := rs.Scan(&mseq, &m.Frame, &m.Exclude); err != nil {
				rs.Close()
				return err
			}
			m.Seq = uint64(mseq)
			out.Messages = append(out.Messages, m)
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return err
		}
		if out.Doc.Epoch == "" {
			return nil
		}
		out.Doc.Seq, out.Doc.BaseSeq, out.Doc.Base = uint64(docSeq), uint64(docBaseSeq), docBase
		rs, err = q.query(ctx, `SELECT msg FROM doc_updates WHERE room = $1 ORDER BY seq`, room)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var u []byte
			if err := rs.Scan(&u); err != nil {
				return err
			}
			out.Doc.Updates = append(out.Doc.Updates, nonNil(u))
		}
		return rs.Err()
	})
	if err != nil {
		return Room{}, fmt.Errorf("store: load %q: %w", room, err)
	}
	return out, nil
}

// Versions lists the room's versions, newest first.
func (s *sqlStore) Versions(ctx context.Context, room string) ([]Version, error) {
	var out []Version
	err := s.read(ctx, func(q querier) error {
		rs, err := q.query(ctx, `SELECT id, at, kind, seq, bytes FROM versions WHERE room = $1 ORDER BY at DESC, id DESC`, room)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var v Version
			var at, seq int64
			var kind string
			if err := rs.Scan(&v.ID, &at, &kind, &seq, &v.Bytes); err != nil {
				return err
			}
			v.At, v.Kind, v.Seq = time.UnixMicro(at), VersionKind(kind), uint64(seq)
			out = append(out, v)
		}
		return rs.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("store: versions of %q: %w", room, err)
	}
	return out, nil
}

// Version returns one version with its data; ErrNotFound when absent.
func (s *sqlStore) Version(ctx context.Context, room string, id int64) (Version, []byte, error) {
	v := Version{ID: id}
	var data []byte
	err := s.read(ctx, func(q querier) error {
		var at, seq int64
		var kind string
		err := q.queryRow(ctx, `SELECT at, kind, seq, bytes, data FROM versions WHERE room = $1 AND id = $2`, room, id).
			Scan(&at, &kind, &seq, &v.Bytes, &data)
		v.At, v.Kind, v.Seq = time.UnixMicro(at), VersionKind(kind), uint64(seq)
		return err
	})
	if errors.Is(err, errNoRows) {
		return Version{}, nil, ErrNotFound
	}
	if err != nil {
		return Version{}, nil, fmt.Errorf("store: version %d of %q: %w", id, room, err)
	}
	return v, nonNil(data), nil
}

// Rooms lists the rooms the store holds, by name (bytewise), after
// cursor, at most limit (zero or less means 100); next is "" after the
// last page. The cursor is the last room of the page, encoded.
func (s *sqlStore) Rooms(ctx context.Context, cursor string, limit int) ([]RoomInfo, string, error) {
	after, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return nil, "", fmt.Errorf("%w %q", ErrBadCursor, cursor)
	}
	if limit <= 0 {
		limit = 100
	}
	var out []RoomInfo
	err = s.read(ctx, func(q querier) error {
		rs, err := q.query(ctx, `SELECT room, updated_at, doc_bytes, state_bytes FROM rooms WHERE room > $1 ORDER BY room LIMIT $2`,
			string(after), int64(limit)+1)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var ri RoomInfo
			var updated int64
			if err := rs.Scan(&ri.Room, &updated, &ri.DocBytes, &ri.StateBytes); err != nil {
				return err
			}
			ri.Updated = time.UnixMicro(updated)
			out = append(out, ri)
		}
		return rs.Err()
	})
	if err != nil {
		return nil, "", fmt.Errorf("store: rooms: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(out[limit-1].Room))
	}
	return out, next, nil
}
