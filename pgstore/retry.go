package pgstore

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// resetter is a DBTX that can drop all of its connections at once:
// *pgxpool.Pool. A *pgx.Conn or a pgx.Tx cannot, and is read again as is.
type resetter interface{ Reset() }

// ConnectionLost reports whether err says that the connection a read used
// is gone (the server restarted or was shut down, the socket was reset or
// closed), so that the same read on a new connection may well succeed. It is
// false for context cancellation and deadlines, for connection attempts that
// failed (nothing was lost; the server is down or refuses), and for errors
// the server reported about the query itself.
func ConnectionLost(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception. 57P01 admin_shutdown (a fast or
		// immediate shutdown, pg_terminate_backend), 57P02 crash_shutdown,
		// 57P03 cannot_connect_now (the server is starting or stopping).
		switch pgErr.Code {
		case "57P01", "57P02", "57P03":
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08")
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op != "dial" && !opErr.Timeout() {
		return true
	}
	// Nothing reached the server (a connection found closed before use).
	return pgconn.SafeToRetry(err)
}

// retryRead runs read and, if it failed because its connection was gone,
// runs it once more on a new one. Reads are idempotent. After a server
// restart every idle pooled connection is dead, so the pool is reset first:
// the retry then dials instead of taking the next dead connection.
func retryRead[T any](ctx context.Context, s *Store, read func() (T, error)) (T, error) {
	v, err := read()
	if err == nil || ctx.Err() != nil || !ConnectionLost(err) {
		return v, err
	}
	s.ResetConnections()
	s.logger.Warn("the database connection was lost; retrying the read once on a new connection", zap.Error(err))
	return read()
}

// ResetConnections drops every pooled connection (those in use when they
// are returned), so that the next reads dial: for when the connections are
// known or likely to be dead (the revocation listener found its own dead).
// A no-op on a single connection or a transaction.
func (s *Store) ResetConnections() {
	if r, ok := s.db.(resetter); ok {
		r.Reset()
	}
}
