package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite" // pure Go SQLite: no cgo
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the store of one instance: a database file in WAL mode. One
// connection, owned by the writer, writes; a pool of others reads
// alongside it (WAL lets readers run during a commit).
type SQLite struct {
	sqlStore
	path string
}

var _ Store = (*SQLite)(nil)

// OpenSQLite opens the database file at path, creating its directory and
// the file on first start, and migrates its schema.
//
// Durability: WAL mode, so a committed Write survives kill -9 of the
// process whatever opts.SQLiteSync says; with "FULL" (the default) each
// commit is fsynced too and survives power loss, with "NORMAL" a power
// loss may take the last commits back (never corrupting the file).
func OpenSQLite(ctx context.Context, path string, opts Options) (*SQLite, error) {
	opts = opts.withDefaults()
	if opts.MaxConns <= 0 {
		opts.MaxConns = 4
	}
	sync := strings.ToUpper(opts.SQLiteSync)
	if sync != "FULL" && sync != "NORMAL" {
		return nil, fmt.Errorf("store: SQLiteSync %q is neither FULL nor NORMAL", opts.SQLiteSync)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("store: sqlite path %q has a ? or #", path)
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", opts.BusyTimeout.Milliseconds()))
	q.Add("_pragma", "synchronous("+sync+")")
	// Writes: one connection, and BEGIN IMMEDIATE so a write transaction
	// holds the write lock from its start (no upgrade from a read lock to
	// fail halfway with SQLITE_BUSY).
	wq := url.Values{"_pragma": append([]string{"journal_mode(WAL)"}, q["_pragma"]...), "_txlock": {"immediate"}}
	rq := url.Values{"_pragma": append([]string{"query_only(1)"}, q["_pragma"]...)}
	wdb, err := sql.Open("sqlite", path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if err := pingBusy(ctx, wdb, opts.BusyTimeout); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// The read pool opens after the writer switched the file to WAL.
	rdb, err := sql.Open("sqlite", path+"?"+rq.Encode())
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(opts.MaxConns)
	rdb.SetMaxIdleConns(opts.MaxConns)
	db := &sqliteDB{write: wdb, read: rdb}
	if err := migrate(ctx, db, "sqlite", ""); err != nil {
		db.close()
		return nil, err
	}
	s := &SQLite{path: path}
	s.start(db, opts)
	return s, nil
}

// pingBusy opens the first connection, waiting up to busy while another
// connection holds the lock that switching to WAL needs: SQLite answers
// that switch with SQLITE_BUSY at once, without its busy handler.
func pingBusy(ctx context.Context, db *sql.DB, busy time.Duration) error {
	deadline := time.Now().Add(busy)
	for {
		err := db.PingContext(ctx)
		var e *sqlite.Error
		if err == nil || !errors.As(err, &e) || e.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

type sqliteDB struct {
	write *sql.DB // one connection: the writer's (and the migration's)
	read  *sql.DB
}

func (d *sqliteDB) begin(ctx context.Context, write bool) (txn, error) {
	db, opts := d.read, &sql.TxOptions{ReadOnly: true}
	if write {
		db, opts = d.write, nil
	}
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return sqliteTx{tx}, nil
}

func (d *sqliteDB) lockRoom() string         { return "" }
func (d *sqliteDB) retryable(err error) bool { return false }

// unreachable: a file is there or it is not; a lock held elsewhere is
// waited for by busy_timeout already.
func (d *sqliteDB) unreachable(err error) bool { return false }
func (d *sqliteDB) ping(ctx context.Context) error {
	var one int
	return d.read.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

func (d *sqliteDB) close() error {
	return errors.Join(d.read.Close(), d.write.Close())
}

type sqliteTx struct{ tx *sql.Tx }

func (t sqliteTx) exec(ctx context.Context, q string, args ...any) error {
	_, err := t.tx.ExecContext(ctx, q, args...)
	return err
}

func (t sqliteTx) queryRow(ctx context.Context, q string, args ...any) scanner {
	return sqliteRow{t.tx.QueryRowContext(ctx, q, args...)}
}

func (t sqliteTx) query(ctx context.Context, q string, args ...any) (rows, error) {
	rs, err := t.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqliteRows{rs}, nil
}

func (t sqliteTx) commit(context.Context) error { return t.tx.Commit() }
func (t sqliteTx) rollback()                    { _ = t.tx.Rollback() }

type sqliteRow struct{ row *sql.Row }

func (r sqliteRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return errNoRows
	}
	return err
}

type sqliteRows struct{ *sql.Rows }

func (r sqliteRows) Close() { _ = r.Rows.Close() }
