package store

import "time"

// Options tunes a store. Every field's zero value means the default it
// names; defaults are filled in once, by the constructors.
type Options struct {
	// MaxConns is how many connections serve reads: the SQLite read pool,
	// or the whole PostgreSQL pool (the writer takes one of them). Zero
	// means 4 for SQLite and, for PostgreSQL, the URL's pool_max_conns
	// or else pgxpool's default (the larger of 4 and the CPU count).
	MaxConns int
	// MaxGroup is how many Write batches the writer commits in one
	// transaction at most. Zero means 256.
	MaxGroup int
	// CommitTimeout bounds one group commit, its retries included, so a
	// database that stops answering fails the waiting Writes instead of
	// holding them (and Close) forever. Zero means 30 seconds.
	CommitTimeout time.Duration
	// BusyTimeout is how long SQLite waits for a lock another connection
	// holds (a checkpoint, a second process) before failing. Zero means
	// 5 seconds.
	BusyTimeout time.Duration
	// SQLiteSync is SQLite's synchronous setting, "FULL" or "NORMAL".
	// Zero means "FULL": every commit is fsynced, so an acked write
	// survives power loss too, and group commit shares one fsync among
	// all the Writes waiting (see BenchmarkSQLiteWriteMessages). "NORMAL"
	// still survives kill -9 of the process (WAL), but a power loss may
	// take the last commits back.
	SQLiteSync string
}

func (o Options) withDefaults() Options {
	if o.MaxGroup <= 0 {
		o.MaxGroup = 256
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = 30 * time.Second
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	if o.SQLiteSync == "" {
		o.SQLiteSync = "FULL"
	}
	return o
}
