package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the store a cluster shares. Each instance commits its
// writes through its own group-commit writer; a room's row is locked
// while an op reads and changes it, so instances writing the same room
// take turns and OpSnapshot's "furthest copy wins" holds across them.
type Postgres struct {
	sqlStore
	pool *pgxpool.Pool
}

var _ Store = (*Postgres)(nil)

// OpenPostgres connects to the database at url (a postgres:// URL or a
// key=value string, as pgx reads them) and migrates its schema; several
// instances may do so at once.
func OpenPostgres(ctx context.Context, url string, opts Options) (*Postgres, error) {
	opts = opts.withDefaults()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message may quote the URL, password included.
		return nil, errors.New("store: the postgres URL does not parse")
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = int32(opts.MaxConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	db := &postgresDB{pool: pool}
	if err := migrate(ctx, db, "postgres", fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", migrationLock)); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Postgres{pool: pool}
	s.start(db, opts)
	return s, nil
}

type postgresDB struct{ pool *pgxpool.Pool }

func (d *postgresDB) begin(ctx context.Context, write bool) (txn, error) {
	opts := pgx.TxOptions{}
	if !write {
		// One snapshot for every query of a read (Load reads three
		// tables).
		opts = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	}
	tx, err := d.pool.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return postgresTx{tx}, nil
}

func (d *postgresDB) lockRoom() string { return " FOR UPDATE" }

// retryable: a deadlock between two instances' group commits (each
// locking rooms in its own order) or a serialization failure; running the
// group again is all they ask.
func (d *postgresDB) retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// unreachable: no answer from the server at all (a network error, a
// connection that could not be made), or the server ending or refusing
// the session: class 08 (connection exception), 57P01-57P03 (shut down,
// crash, cannot connect now) and 55000 for a database that does not
// allow connections at the moment.
func (d *postgresDB) unreachable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	}
	switch {
	case strings.HasPrefix(pgErr.Code, "08"), pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03":
		return true
	case pgErr.Code == "55000":
		var connErr *pgconn.ConnectError
		return errors.As(err, &connErr)
	}
	return false
}

func (d *postgresDB) ping(ctx context.Context) error { return d.pool.Ping(ctx) }

func (d *postgresDB) close() error {
	d.pool.Close()
	return nil
}

type postgresTx struct{ tx pgx.Tx }

func (t postgresTx) exec(ctx context.Context, q string, args ...any) error {
	_, err := t.tx.Exec(ctx, q, args...)
	return err
}

func (t postgresTx) queryRow(ctx context.Context, q string, args ...any) scanner {
	return postgresRow{t.tx.QueryRow(ctx, q, args...)}
}

func (t postgresTx) query(ctx context.Context, q string, args ...any) (rows, error) {
	return t.tx.Query(ctx, q, args...)
}

func (t postgresTx) commit(ctx context.Context) error { return t.tx.Commit(ctx) }

// rollback runs without the caller's context: a rollback after that
// context ended must still reach the server (or drop the connection).
func (t postgresTx) rollback() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = t.tx.Rollback(ctx)
}

type postgresRow struct{ row pgx.Row }

func (r postgresRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNoRows
	}
	return err
}
